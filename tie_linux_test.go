//go:build !pipes_portable

package pipes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
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

// adv32End builds one end of a relay or a copy and its peer, closed when
// the test ends.
type adv32End func(t *testing.T) (end, peer io.ReadWriter)

// adv32SocketFiles returns the two ends of a unix stream socketpair as
// *os.File: on the netpoller (O_NONBLOCK, with deadlines) or in
// blocking mode (no deadlines: a copy waits for it in poll(2) slices).
func adv32SocketFiles(t *testing.T, nonblock bool) (io.ReadWriter, io.ReadWriter) {
	t.Helper()
	typ := syscall.SOCK_STREAM | syscall.SOCK_CLOEXEC
	if nonblock {
		typ |= syscall.SOCK_NONBLOCK
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, typ, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// adv32Ends are ends that TestTieEndsWaits (TCP only) does not try: an
// *os.File of a socket, on the netpoller or in blocking mode, the
// *os.File a TCP connection's File method returns, a connection that
// hides its descriptor (struct{ net.Conn }), and a *tls.Conn.
var adv32Ends = []struct {
	name string
	make adv32End
}{
	{"file-nonblock", func(t *testing.T) (io.ReadWriter, io.ReadWriter) { return adv32SocketFiles(t, true) }},
	{"file-blocking", func(t *testing.T) (io.ReadWriter, io.ReadWriter) { return adv32SocketFiles(t, false) }},
	{"tcp-file", func(t *testing.T) (io.ReadWriter, io.ReadWriter) {
		a, b := tcpPair(t)
		f, err := a.File()
		a.Close()
		t.Cleanup(func() { b.Close() })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f, b
	}},
	{"hidden", func(t *testing.T) (io.ReadWriter, io.ReadWriter) {
		a, b := tcpPair(t)
		t.Cleanup(func() { a.Close(); b.Close() })
		return struct{ net.Conn }{a}, b
	}},
	{"tls", func(t *testing.T) (io.ReadWriter, io.ReadWriter) {
		a, b := tcpPair(t)
		t.Cleanup(func() { a.Close(); b.Close() })
		// Both handshakes done before the copy: one the copy's first
		// Read ran, and a deadline of the copy's timeout ended, would
		// leave tls.Conn its error for good (as under io.Copy).
		return adv32TLS(t, a, b)
	}},
}

// TestAdv32TieEndsKinds ends a relay, a CopyContext and a CopyAsync from
// a (one of adv32Ends) to a TCP connection b, each waiting for input or
// stalled on b's peer, which does not read, by a cancel with a cause, a
// context's timeout and the engine's Close: each must return with the
// error that says which (not a deadline of the caller's), and a must
// read and write afterwards (no deadline left on it).
func TestAdv32TieEndsKinds(t *testing.T) {
	fdtest.Check(t)
	cause := errors.New("the caller's cause")
	ops := []struct {
		name  string
		start func(e *Engine, ctx context.Context, a, b io.ReadWriter) <-chan error
	}{
		{"Relay", func(e *Engine, ctx context.Context, a, b io.ReadWriter) <-chan error {
			ch := make(chan error, 1)
			go func() { _, _, err := e.Relay(ctx, a, b); ch <- err }()
			return ch
		}},
		{"CopyContext", func(e *Engine, ctx context.Context, a, b io.ReadWriter) <-chan error {
			ch := make(chan error, 1)
			go func() { _, err := e.CopyContext(ctx, b, a); ch <- err }()
			return ch
		}},
		{"CopyAsync", func(e *Engine, ctx context.Context, a, b io.ReadWriter) <-chan error {
			f := e.CopyAsync(ctx, b, a)
			ch := make(chan error, 1)
			go func() { _, err := f.Wait(); ch <- err }()
			return ch
		}},
	}
	ends := []struct {
		name string
		want error
	}{
		{"cause", cause},
		{"timeout", context.DeadlineExceeded},
		{"Close", ErrClosed},
	}
	for _, kind := range adv32Ends {
		for _, op := range ops {
			for _, stalled := range []bool{false, true} {
				for _, end := range ends {
					name := fmt.Sprintf("%s/%s/stalled=%v/%s", kind.name, op.name, stalled, end.name)
					t.Run(name, func(t *testing.T) {
						e, err := NewEngine()
						if err != nil {
							t.Fatal(err)
						}
						defer e.Close()
						a, pa := kind.make(t)
						b, pb := tcpPair(t)
						closeAtEnd(t, b, pb)
						var sent chan struct{}
						if stalled {
							// More than a's and b's buffers hold.
							sent = make(chan struct{})
							go func() { defer close(sent); pa.Write(make([]byte, 32<<20)) }()
						}
						ctx, cancel := context.WithCancelCause(context.Background())
						defer cancel(nil)
						if end.name == "timeout" {
							var stop context.CancelFunc
							ctx, stop = context.WithTimeout(ctx, 20*time.Millisecond)
							defer stop()
						}
						done := op.start(e, ctx, a, b)
						switch end.name {
						case "cause":
							time.Sleep(20 * time.Millisecond)
							cancel(cause)
						case "Close":
							time.Sleep(20 * time.Millisecond)
							go e.Close()
						}
						select {
						case err := <-done:
							if !errors.Is(err, end.want) {
								t.Fatalf("ended by %s: %v, want an error matching %v", end.name, err, end.want)
							}
						case <-time.After(10 * time.Second):
							t.Fatalf("not ended 10 s after %s", end.name)
						}
						if stalled {
							// b's peer takes what b holds: b must take a
							// write, and a, which holds more of what its
							// peer sent, must be read.
							go io.Copy(io.Discard, pb)
							if _, err := b.Write([]byte("again")); err != nil {
								t.Fatalf("after the copy: b's write: %v", err)
							}
							if _, err := a.Read(make([]byte, 1)); err != nil {
								t.Fatalf("after the copy: a's read: %v", err)
							}
							go io.Copy(io.Discard, a)
							<-sent
							return
						}
						checkUsable(t, a, pa)
					})
				}
			}
		}
	}
}
