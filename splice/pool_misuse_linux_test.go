//go:build linux

package splice

import (
	"context"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestPoolMisuse: a Pool and its pipes used wrongly, as an outside caller
// may. Each case ends with two Gets that must hand out two different open
// pipes, and Stats that count them.
func TestPoolMisuse(t *testing.T) {
	fdtest.Check(t)
	for _, tc := range []struct {
		name string
		pool func() *Pool
		// misuse runs on the pool; wantPanic says whether the contract
		// has it panic.
		misuse    func(t *testing.T, p *Pool)
		wantPanic bool
	}{
		{"Put twice", func() *Pool { return NewPool(0, 4) }, func(t *testing.T, p *Pool) {
			pp := mustGet(t, p)
			p.Put(pp)
			p.Put(pp)
		}, true},
		{"Close after Put", func() *Pool { return NewPool(0, 4) }, func(t *testing.T, p *Pool) {
			pp := mustGet(t, p)
			p.Put(pp)
			if err := pp.Close(); err != nil {
				t.Errorf("Close of a pipe put back: %v", err)
			}
		}, false},
		{"Put of a pipe of another pool", func() *Pool { return NewPool(0, 4) }, func(t *testing.T, p *Pool) {
			other := NewPool(0, 1)
			defer other.Close()
			pp := mustGet(t, other)
			p.Put(pp)
			if s := other.Stats(); s.Alive != 0 || s.InUse != 0 {
				t.Errorf("the other pool after its pipe was put into this one: %+v", s)
			}
		}, false},
		{"Put of a pipe of another pool, already idle there", func() *Pool { return NewPool(0, 4) }, func(t *testing.T, p *Pool) {
			other := NewPool(0, 1)
			defer other.Close()
			pp := mustGet(t, other)
			other.Put(pp)
			p.Put(pp)
			if q := mustGet(t, other); q.ReadFd() < 0 {
				t.Errorf("the other pool handed out a closed pipe")
			} else {
				other.Put(q)
			}
		}, false},
		{"Put of a NewPipe", func() *Pool { return NewPool(0, 4) }, func(t *testing.T, p *Pool) {
			pp, err := NewPipe(0)
			if err != nil {
				t.Fatal(err)
			}
			p.Put(pp)
			if pp.ReadFd() != -1 {
				t.Errorf("a foreign pipe put into the pool is not closed")
			}
		}, false},
		{"zero Pool", func() *Pool { return new(Pool) }, func(*testing.T, *Pool) {}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.pool()
			defer p.Close()
			panicked := func() (panicked bool) {
				defer func() { panicked = recover() != nil }()
				tc.misuse(t, p)
				return false
			}()
			if panicked != tc.wantPanic {
				t.Errorf("panicked: %v, want %v", panicked, tc.wantPanic)
			}
			// Two Gets that need not wait (a cancelled context makes a
			// wait fail at once).
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			a, err := p.Get(ctx)
			if err != nil {
				t.Fatalf("first Get: %v (%+v)", err, p.Stats())
			}
			b := p.TryGet()
			if b == nil {
				t.Fatalf("TryGet = nil (%+v)", p.Stats())
			}
			if a == b {
				t.Fatalf("Get and TryGet handed out the same pipe")
			}
			for _, pp := range []*Pipe{a, b} {
				if _, err := unix.FcntlInt(uintptr(pp.ReadFd()), unix.F_GETPIPE_SZ, 0); err != nil {
					t.Errorf("pipe handed out is not an open pipe: fd %d: %v", pp.ReadFd(), err)
				}
			}
			if s := p.Stats(); s.InUse != 2 || s.Alive < 2 || s.Max <= 0 || s.Size <= 0 {
				t.Errorf("Stats with two pipes out: %+v", s)
			}
			p.Put(a)
			p.Put(b)
			if s := p.Stats(); s.InUse != 0 || s.Idle != s.Alive {
				t.Errorf("Stats with every pipe back: %+v", s)
			}
		})
	}
}

func mustGet(t *testing.T, p *Pool) *Pipe {
	t.Helper()
	pp, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return pp
}

// TestZeroPipe: the zero Pipe has no descriptors: its ReadFd and WriteFd
// are -1 and its Close closes nothing (not descriptor 0).
func TestZeroPipe(t *testing.T) {
	if _, err := unix.FcntlInt(0, unix.F_GETFD, 0); err != nil {
		t.Skipf("descriptor 0 is not open: %v", err)
	}
	var p Pipe
	if p.ReadFd() != -1 || p.WriteFd() != -1 {
		t.Errorf("zero Pipe: ReadFd %d, WriteFd %d; want -1, -1", p.ReadFd(), p.WriteFd())
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close of the zero Pipe: %v", err)
	}
	if _, err := unix.FcntlInt(0, unix.F_GETFD, 0); err != nil {
		t.Fatalf("descriptor 0 closed by the Close of the zero Pipe: %v", err)
	}
}
