package fd

import (
	"os"
	"testing"
	"time"
)

// TestGroup: Close wakes a member blocked in a read, Leave clears the
// deadline it set; a member joining a closed Group is woken at once; a
// member that leaves before Close keeps its owner's deadline.
func TestGroup(t *testing.T) {
	for _, c := range []struct {
		name        string
		closeBefore bool // Close the Group before the member joins
		leaveEarly  bool // the member leaves before Close: never woken
	}{
		{name: "close while blocked"},
		{name: "join after close", closeBefore: true},
		{name: "leave before close", leaveEarly: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()
			var g Group
			if c.closeBefore {
				g.Close()
			}
			d := Of(nil, r)
			m := &Member{T: &d}
			g.Join(m)
			if c.leaveEarly {
				owner := time.Now().Add(time.Hour)
				r.SetReadDeadline(owner)
				g.Leave(m)
				g.Close()
				w.Write([]byte{1})
				if n, err := r.Read(make([]byte, 1)); n != 1 || err != nil {
					t.Fatalf("Read after Leave and Close = %d, %v; want the byte", n, err)
				}
				return
			}
			if !c.closeBefore {
				go func() {
					time.Sleep(10 * time.Millisecond)
					g.Close()
				}()
			}
			if _, err := r.Read(make([]byte, 1)); !os.IsTimeout(err) {
				t.Fatalf("Read = %v; want a deadline error", err)
			}
			g.Leave(m)
			w.Write([]byte{1})
			if n, err := r.Read(make([]byte, 1)); n != 1 || err != nil {
				t.Fatalf("Read after Leave = %d, %v; want the byte", n, err)
			}
		})
	}
}

// TestGroupMembers: Leave unlinks a member wherever it is in the list;
// Close wakes exactly those still in.
func TestGroupMembers(t *testing.T) {
	var g Group
	ms := make([]*Member, 4)
	for i := range ms {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer w.Close()
		d := Of(nil, r)
		ms[i] = &Member{T: &d}
		g.Join(ms[i])
	}
	g.Leave(ms[0]) // the tail (joined first)
	g.Leave(ms[3]) // the head
	g.Leave(ms[2]) // the head again, after the first unlink
	g.Close()
	for i, m := range ms {
		if want := i == 1; m.woke != want {
			t.Errorf("member %d woke = %v; want %v", i, m.woke, want)
		}
	}
	if g.head != ms[1] || ms[1].prev != nil || ms[1].next != nil {
		t.Errorf("list after the Leaves: head %p, want only member 1 (%p)", g.head, ms[1])
	}
}
