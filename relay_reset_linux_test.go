//go:build !pipes_portable

package pipes

import (
	"context"
	"crypto/tls"
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

// adv32TLS is adv25TLS with both handshakes complete.
func adv32TLS(t *testing.T, s, c net.Conn) (server, client *tls.Conn) {
	t.Helper()
	server, client = adv25TLS(t, s, c)
	done := make(chan error, 1)
	go func() { done <- client.Handshake() }()
	if err := server.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return server, client
}

// TestAdv32ResetTLSNotPassedOn: a's peer resets while the relay writes
// to a; the write (b->a) takes the reset, and direction a->b, reading a
// next, reads EOF. That EOF must not be passed on to b's peer as a
// clean end.
func TestAdv32ResetTLSNotPassedOn(t *testing.T) {
	for _, kind := range []string{"tcp", "tls"} {
		t.Run(kind, func(t *testing.T) {
			e := newTestEngine(t)
			raw, praw := tcpPair(t)
			t.Cleanup(func() { raw.Close(); praw.Close() })
			var a io.ReadWriter = raw
			if kind == "tls" {
				a, _ = adv32TLS(t, raw, praw)
			}
			b, pb := tcpPair(t)
			t.Cleanup(func() { b.Close(); pb.Close() })
			go pb.Write(make([]byte, 64<<20)) // a's peer never reads
			bToAFailed, aToBDone := make(chan struct{}), make(chan struct{})
			order := RelayOption(func(c *relayConfig) {
				c.beforeCopy = func(dir int) {
					if dir == dirAToB {
						<-bToAFailed // read a only once the write took the reset
					}
				}
				c.beforeFinish = func(dir int, err error) {
					if dir == dirBToA {
						close(bToAFailed)
						<-aToBDone
					} else {
						close(aToBDone)
					}
				}
			})
			res := startRelay(e, context.Background(), a, b, order)
			waitSent(t, raw)
			praw.SetLinger(0)
			praw.Close()
			r := waitRelay(t, res)
			if !errors.Is(r.err, syscall.ECONNRESET) && !errors.Is(r.err, syscall.EPIPE) {
				t.Errorf("relay: %v, want the reset", r.err)
			}
			if _, err := b.Write([]byte("x")); err != nil {
				t.Errorf("b was shut down for writing (its peer read EOF): %v", err)
			}
		})
	}
}
