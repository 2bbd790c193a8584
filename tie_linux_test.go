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
// come from different goroutines.
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
		name string
		end  func(e *Engine, cancel context.CancelCauseFunc)
		want error
	}{
		{"cancel", func(_ *Engine, cancel context.CancelCauseFunc) { cancel(nil) }, context.Canceled},
		{"cause", func(_ *Engine, cancel context.CancelCauseFunc) { cancel(cause) }, cause},
		{"Close", func(e *Engine, _ context.CancelCauseFunc) { e.Close() }, ErrClosed},
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
					done := s.start(e, ctx, a, b)
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
