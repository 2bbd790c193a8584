//go:build linux

package splice

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// countingGate is a Gate of turns that records how many calls held one
// at once, at most, and how many it gave and got back.
type countingGate struct {
	turns          chan struct{}
	inside, most   atomic.Int64
	entered, given atomic.Int64 // Enter calls that gave a turn; Leave calls
}

func newCountingGate(turns int) *countingGate {
	return &countingGate{turns: make(chan struct{}, turns)}
}

func (g *countingGate) Enter(ctx context.Context) (bool, error) {
	select {
	case g.turns <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	g.entered.Add(1)
	n := g.inside.Add(1)
	for m := g.most.Load(); n > m && !g.most.CompareAndSwap(m, n); m = g.most.Load() {
	}
	return true, nil
}

func (g *countingGate) Leave() {
	g.given.Add(1)
	g.inside.Add(-1)
	<-g.turns
}

// TestSendfileGate runs copies sharing a Gate of one turn: every
// sendfile(2) call into a non-blocking socket takes a turn, no two at
// once, every turn is given back, and the bytes arrive whole.
func TestSendfileGate(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(12<<20 + 5)
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			g := newCountingGate(1)
			var wg sync.WaitGroup
			for range 6 {
				f := tempFile(t, data)
				a, b := connPair(t, network)
				d := drainConn(a, b)
				s := endOf(t, f, true)
				s.Gate = g
				wg.Add(1)
				go func() {
					defer wg.Done()
					n, handled, err := Sendfile(context.Background(), endOf(t, a.(syscall.Conn), false), s, -1)
					got := d.finish()
					if n != int64(len(data)) || !handled || err != nil || sum(got) != sum(data) {
						t.Errorf("Sendfile = (%d, %v, %v), the peer got %d bytes, want %d, whole", n, handled, err, len(got), len(data))
					}
				}()
			}
			wg.Wait()
			if m := g.most.Load(); m != 1 {
				t.Errorf("%d calls held a turn at once, want 1", m)
			}
			if e, l := g.entered.Load(), g.given.Load(); e < 6*3 || e != l {
				t.Errorf("turns: %d given, %d given back; want one per call (at least %d)", e, l, 6*3)
			}
		})
	}
}

// TestSendfileGateWait: a copy waiting for a turn that never comes ends
// when its context does, with the context's error and nothing sent; a
// blocking destination (whose call can wait for room) never asks for a
// turn.
func TestSendfileGateWait(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(1 << 20)
	t.Run("cancelled", func(t *testing.T) {
		g := newCountingGate(1)
		g.turns <- struct{}{} // taken, and never given back
		a, b := connPair(t, "unix")
		d := drainConn(a, b)
		s := endOf(t, tempFile(t, data), true)
		s.Gate = g
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		var n int64
		go func() {
			var err error
			n, _, err = Sendfile(ctx, endOf(t, a.(syscall.Conn), false), s, -1)
			done <- err
		}()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) || n != 0 {
			t.Errorf("Sendfile = (%d, %v), want (0, context.Canceled)", n, err)
		}
		if got := d.finish(); len(got) != 0 {
			t.Errorf("the peer got %d bytes, want none", len(got))
		}
	})
	t.Run("blocking-dst", func(t *testing.T) {
		g := newCountingGate(1)
		a, b := connPair(t, "unix")
		fa, err := a.(*net.UnixConn).File()
		if err != nil {
			t.Fatal(err)
		}
		defer fa.Close()
		a.Close()
		if err := syscall.SetNonblock(int(fa.Fd()), false); err != nil {
			t.Fatal(err)
		}
		got := make(chan []byte, 1)
		go func() { b, _ := io.ReadAll(b); got <- b }()
		s := endOf(t, tempFile(t, data), true)
		s.Gate = g
		n, _, err := Sendfile(context.Background(), endOf(t, fa, false), s, -1)
		fa.Close()
		if got := <-got; n != int64(len(data)) || err != nil || sum(got) != sum(data) {
			t.Errorf("Sendfile = (%d, %v), the peer got %d bytes, want %d", n, err, len(got), len(data))
		}
		if e := g.entered.Load(); e != 0 {
			t.Errorf("%d calls into a blocking destination took a turn, want none", e)
		}
	})
}
