package fd

import (
	"context"
	"testing"
	"time"
)

// panicReader is a source whose read deadline setter panics with its
// value when asked for a deadline in the past.
type panicReader struct{ val string }

func (p panicReader) SetReadDeadline(t time.Time) error {
	if !t.IsZero() {
		panic(p.val)
	}
	return nil
}

// recordWriter records the write deadlines it is given.
type recordWriter struct{ set []time.Time }

func (w *recordWriter) SetWriteDeadline(t time.Time) error {
	w.set = append(w.set, t)
	return nil
}

// recovered runs f and returns what it panicked with.
func recovered(f func()) (p any) {
	defer func() { p = recover() }()
	f()
	return nil
}

// TestWakePanics: a deadline setter that panics when a Waker or a
// Group's Close wakes it does not end the process from the goroutine
// that woke it (context.AfterFunc's), nor keep the other setters from
// being called: its panic is raised again where the copy it guards
// stops its waker (Waker.Stop) or leaves the Group (Leave).
func TestWakePanics(t *testing.T) {
	for _, c := range []struct {
		name string
		// wake arms the interruption of d, wakes it, and returns the
		// call that ends it, which panics with the setter's value.
		wake func(d Deadlines) (stop func())
	}{
		{"Waker", func(d Deadlines) func() {
			ctx, cancel := context.WithCancel(context.Background())
			var i Interrupt
			i.D = d
			i.Arm(ctx)
			cancel()
			return i.Stop
		}},
		{"Group", func(d Deadlines) func() {
			var g Group
			od := Of(nil, panicReader{"other"})
			other := &Member{T: &od}
			m := &Member{T: &d}
			g.Join(other)
			g.Join(m)
			if p := recovered(g.Close); p != nil {
				t.Errorf("Group.Close panicked with %v; the panic is its member's", p)
			}
			if p := recovered(func() { g.Leave(other) }); p != "other" {
				t.Errorf("Leave of the other member panicked with %v; want its own setter's", p)
			}
			return func() { g.Leave(m) }
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			// The read side's setter panics; the write side's must be
			// set all the same, and cleared.
			var w recordWriter
			stop := c.wake(Of(&w, panicReader{"setter"}))
			if p := recovered(stop); p != "setter" {
				t.Fatalf("stop panicked with %v; want the setter's panic", p)
			}
			if len(w.set) != 2 || !w.set[0].Equal(aLongTimeAgo) || !w.set[1].IsZero() {
				t.Errorf("write deadlines set: %v; want one in the past, then none", w.set)
			}
		})
	}
}
