//go:build !pipes_portable

package pipes

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestTieEndsWaits: a copy or relay on a context that can end (a tie)
// waiting on a socket is ended by its context's cancel, with or without
// a cause, and by the engine's Close, with the error that says which,
// never taken for a deadline of the caller's; and no deadline is left on
// its ends. Each case runs a few times: the wake and the context's end
// come from different goroutines. A context of a type of its own
// (foreign) widens the window where the tie's wake could come before
// its context reports the end: the context package then watches such a
// parent from two goroutines, one for the tie's context and one for the
// tie's AfterFunc, which run in no set order.
func TestTieEndsWaits(t *testing.T) {
	fdtest.Check(t)
	cause := errors.New("the caller's cause")
	starts := []struct {
		name  string
		start func(e *Engine, ctx context.Context, a, b *net.TCPConn) <-chan error
	}{
		{"CopyContext", func(e *Engine, ctx context.Context, a, b *net.TCPConn) <-chan error {
			ch := make(chan error, 1)
			go func() { _, err := e.CopyContext(ctx, b, a); ch <- err }()
			return ch
		}},
		{"CopyAsync", func(e *Engine, ctx context.Context, a, b *net.TCPConn) <-chan error {
			f := e.CopyAsync(ctx, b, a)
			ch := make(chan error, 1)
			go func() { _, err := f.Wait(); ch <- err }()
			return ch
		}},
		{"Relay", func(e *Engine, ctx context.Context, a, b *net.TCPConn) <-chan error {
			ch := make(chan error, 1)
			go func() { _, _, err := e.Relay(ctx, a, b); ch <- err }()
			return ch
		}},
	}
	ends := []struct {
		name    string
		end     func(e *Engine, cancel context.CancelCauseFunc)
		want    error
		foreign bool // the caller's context is a foreignCtx
	}{
		{"cancel", func(_ *Engine, cancel context.CancelCauseFunc) { cancel(nil) }, context.Canceled, false},
		{"cause", func(_ *Engine, cancel context.CancelCauseFunc) { cancel(cause) }, cause, false},
		{"Close", func(e *Engine, _ context.CancelCauseFunc) { e.Close() }, ErrClosed, false},
		{"foreign", func(_ *Engine, cancel context.CancelCauseFunc) { cancel(nil) }, context.Canceled, true},
	}
	for _, s := range starts {
		for _, end := range ends {
			t.Run(s.name+"/"+end.name, func(t *testing.T) {
				for range 5 {
					e := newTestEngine(t)
					a, pa := tcpPair(t)
					b, pb := tcpPair(t)
					closeAtEnd(t, a, pa, b, pb)
					ctx, cancel := context.WithCancelCause(context.Background())
					var parent context.Context = ctx
					if end.foreign {
						parent = foreignCtx{ctx}
					}
					done := s.start(e, parent, a, b)
					time.Sleep(10 * time.Millisecond)
					end.end(e, cancel)
					select {
					case err := <-done:
						if !errors.Is(err, end.want) {
							t.Fatalf("ended by %s: %v, want an error matching %v", end.name, err, end.want)
						}
					case <-time.After(10 * time.Second):
						t.Fatalf("not ended 10s after %s", end.name)
					}
					cancel(nil)
					e.Close()
					checkUsable(t, a, pa)
					checkUsable(t, b, pb)
				}
			})
		}
	}
}

// foreignCtx hides the type of the context it wraps from the context
// package: a child of it, and an AfterFunc on it, are each cancelled by
// a goroutine of their own that waits for its Done.
type foreignCtx struct{ context.Context }

func (foreignCtx) Value(any) any { return nil }
