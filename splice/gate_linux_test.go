//go:build linux

package splice

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// countingGate is a Gate of turns that counts the turns it gave and got
// back, and those held now.
type countingGate struct {
	turns                 chan struct{}
	inside, entered, left atomic.Int64
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
	g.inside.Add(1)
	return true, nil
}

func (g *countingGate) Leave() {
	g.left.Add(1)
	g.inside.Add(-1)
	<-g.turns
}

// copyGate is one copy's view of a shared Gate: it counts the copy's own
// turns, and as the copy's destination Meter it counts the calls that
// delivered bytes, and those that did so without holding a turn.
type copyGate struct {
	shared          *countingGate
	own             countingGate
	calls, unturned atomic.Int64
}

func (g *copyGate) Enter(ctx context.Context) (bool, error) {
	ok, err := g.shared.Enter(ctx)
	if ok {
		g.own.entered.Add(1)
		g.own.inside.Add(1)
	}
	return ok, err
}

func (g *copyGate) Leave() {
	g.own.inside.Add(-1)
	g.own.left.Add(1)
	g.shared.Leave()
}

func (g *copyGate) Add(n int64) int64 {
	if g.own.inside.Load() != 1 {
		g.unturned.Add(1)
	}
	return g.calls.Add(1)
}

// grants is a Pacer that grants what is asked, up to max a time.
type grants struct{ max int }

func (p grants) Take(_ context.Context, n int) (int, error) { return min(n, p.max), nil }
func (grants) Refund(int)                                   {}

// TestSendfileGate runs copies sharing a Gate of one turn into sockets:
// every turn is given back; without a Pacer each sendfile(2) call that
// delivers bytes holds a turn of its own, and with one, whose grants
// are larger than the socket takes at once, only the calls of a grant
// before the copy first waits for room do (the peer reads slowly).
func TestSendfileGate(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(12<<20 + 5)
	for _, c := range []struct {
		network string
		paced   bool // grants of 4 MiB, and the peer reads 16 KiB a millisecond
	}{{"unix", false}, {"tcp", false}, {"unix", true}} {
		t.Run(fmt.Sprintf("%s/paced=%v", c.network, c.paced), func(t *testing.T) {
			shared := newCountingGate(1)
			var gates []*copyGate
			var wg sync.WaitGroup
			for range 4 {
				g := &copyGate{shared: shared}
				gates = append(gates, g)
				f := tempFile(t, data)
				a, b := connPair(t, c.network)
				got := make(chan [32]byte, 1)
				go func() { got <- sum(readAll(b, c.paced)) }()
				s := endOf(t, f, true)
				s.Gate = g
				if c.paced {
					s.Pacer = grants{max: 4 << 20}
				}
				d := endOf(t, a.(syscall.Conn), false)
				d.Meter = g
				wg.Add(1)
				go func() {
					defer wg.Done()
					n, handled, err := Sendfile(context.Background(), d, s, -1)
					a.Close()
					if n != int64(len(data)) || !handled || err != nil || <-got != sum(data) {
						t.Errorf("Sendfile = (%d, %v, %v), want %d bytes, whole", n, handled, err, len(data))
					}
				}()
			}
			wg.Wait()
			for i, g := range gates {
				e, l, calls := g.own.entered.Load(), g.own.left.Load(), g.calls.Load()
				switch {
				case e != l || g.own.inside.Load() != 0:
					t.Errorf("copy %d: %d turns taken, %d given back", i, e, l)
				case !c.paced && g.unturned.Load() != 0:
					t.Errorf("copy %d: %d of %d calls delivered bytes without a turn", i, g.unturned.Load(), calls)
				case c.paced && (e == 0 || e*4 > calls):
					t.Errorf("copy %d: %d turns for %d calls into a slow peer; want a few, for the calls before each grant's first wait", i, e, calls)
				}
			}
			if shared.inside.Load() != 0 || shared.entered.Load() != shared.left.Load() {
				t.Errorf("shared gate: %d turns taken, %d given back", shared.entered.Load(), shared.left.Load())
			}
		})
	}
}

// readAll reads r to its end; slow, 16 KiB a millisecond.
func readAll(r io.Reader, slow bool) []byte {
	if !slow {
		b, _ := io.ReadAll(r)
		return b
	}
	var out []byte
	buf := make([]byte, 16<<10)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out
		}
		time.Sleep(time.Millisecond)
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
