//go:build linux && !pipes_portable

package pipes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Adversarial tests of Relay: ends of every kind a proxy meets, in
// states where the relay must still end when asked to, and report
// exactly the bytes each side received.

// adv6End is one end of a relay and the peer that talks to it, with
// shut, which ends the end's writing once the relay has returned so that
// the peer reads to EOF what the relay delivered.
type adv6End struct {
	end  io.ReadWriter
	peer net.Conn
	shut func()
}

// adv6Ends make the kinds of relay ends.
var adv6Ends = map[string]func(t *testing.T) adv6End{
	// One end of a unix socketpair as an *os.File in blocking mode, as
	// os.NewFile of an inherited or passed descriptor gives: not on the
	// netpoller, without deadlines. Its peer is on the netpoller.
	"blocking-file": func(t *testing.T) adv6End {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fds[0]), "socketpair (blocking)")
		pf := os.NewFile(uintptr(fds[1]), "socketpair")
		peer, err := net.FileConn(pf)
		pf.Close()
		if err != nil {
			f.Close()
			t.Fatal(err)
		}
		closeAtEnd(t, f, peer)
		return adv6End{f, peer, func() { syscall.Shutdown(fds[0], syscall.SHUT_WR) }}
	},
	// No descriptor, no CloseWrite, no buffer: a userspace copy.
	"net.Pipe": func(t *testing.T) adv6End {
		a, b := net.Pipe()
		closeAtEnd(t, a, b)
		return adv6End{a, b, func() { a.Close() }}
	},
	// A unix connection behind a wrapper that hides its descriptor and
	// its CloseWrite, as a TLS or framing layer does.
	"wrapped-unix": func(t *testing.T) adv6End {
		a, b := unixPair(t)
		closeAtEnd(t, a, b)
		return adv6End{struct{ net.Conn }{a}, b, func() { a.CloseWrite() }}
	},
}

// TestAdv6BlockingEndUserspace: a relay between a socket in blocking
// mode (an *os.File from os.NewFile) and an end without a descriptor
// runs in userspace. Whether its reads of the blocking socket wait for
// input (quiet) or its writes wait for room (full: neither peer reads),
// a cancel, Engine.Close or RelayIdleTimeout must end it, as they end
// CopyContext between the same ends, with the counts equal to the bytes
// each peer can then read.
func TestAdv6BlockingEndUserspace(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		for _, pair := range [][2]string{{"blocking-file", "net.Pipe"}, {"wrapped-unix", "blocking-file"}} {
			for _, state := range []string{"quiet", "full"} {
				for _, how := range []string{"cancel", "close", "idle"} {
					t.Run(fmt.Sprintf("%s/%s<->%s/%s/%s", ec.name, pair[0], pair[1], state, how), func(t *testing.T) {
						e := newCaseEngine(t, ec)
						a, b := adv6Ends[pair[0]](t), adv6Ends[pair[1]](t)
						ctx, cancel := context.WithCancel(context.Background())
						defer cancel()
						opts := []RelayOption{nil}
						if how == "idle" {
							opts[0] = RelayIdleTimeout(100 * time.Millisecond)
						}
						var progress [2]atomic.Int64
						opts = append(opts, RelayProgress(&progress[0], &progress[1]))
						res := startRelay(e, ctx, a.end, b.end, opts...)
						// A first byte each way, so that both copies run.
						for _, p := range [][2]net.Conn{{a.peer, b.peer}, {b.peer, a.peer}} {
							go p[0].Write([]byte{1})
							if _, err := io.ReadFull(p[1], make([]byte, 1)); err != nil {
								t.Fatal(err)
							}
						}
						if state == "full" {
							for _, p := range []net.Conn{a.peer, b.peer} {
								go func() {
									buf := relayData(64<<10, 9)
									for {
										if _, err := p.Write(buf); err != nil {
											return
										}
									}
								}()
							}
							// Until the relay stops moving bytes.
							for last := int64(-1); ; time.Sleep(20 * time.Millisecond) {
								n := progress[0].Load() + progress[1].Load()
								if n == last {
									break
								}
								last = n
							}
						}
						r, ok := endRelay(e, how, cancel, res)
						if !ok {
							a.peer.Close()
							b.peer.Close()
							r = <-res
							t.Fatalf("the relay did not end; once its peers closed: (%d, %d, %v)", r.aToB, r.bToA, r.err)
						}
						want := map[string]error{"cancel": context.Canceled, "close": ErrClosed, "idle": os.ErrDeadlineExceeded}[how]
						if !errors.Is(r.err, want) {
							t.Errorf("Relay error = %v, want one matching %v", r.err, want)
						}
						if g0, g1 := progress[0].Load(), progress[1].Load(); g0 != r.aToB || g1 != r.bToA {
							t.Errorf("RelayProgress = (%d, %d), Relay = (%d, %d)", g0, g1, r.aToB, r.bToA)
						}
						for _, c := range []struct {
							name string
							end  adv6End
							want int64
						}{{"b's peer", b, r.aToB}, {"a's peer", a, r.bToA}} {
							c.end.shut()
							c.end.peer.SetReadDeadline(time.Now().Add(20 * time.Second))
							// It has read the first byte already.
							if n, err := io.Copy(io.Discard, c.end.peer); 1+n != c.want || err != nil {
								t.Errorf("%s read 1+%d bytes, then %v; the relay reported %d delivered", c.name, n, err, c.want)
							}
						}
					})
				}
			}
		}
	}
}

// adv6Framed is a connection behind a framing layer, as a *tls.Conn is:
// no descriptor, deadlines passed on, and a CloseWrite that writes a
// trailer (a TLS close_notify) before it half-closes, and so waits for
// room when the peer does not read.
type adv6Framed struct {
	c       *net.UnixConn
	trailer []byte
}

func (x adv6Framed) Read(p []byte) (int, error)         { return x.c.Read(p) }
func (x adv6Framed) Write(p []byte) (int, error)        { return x.c.Write(p) }
func (x adv6Framed) SetReadDeadline(t time.Time) error  { return x.c.SetReadDeadline(t) }
func (x adv6Framed) SetWriteDeadline(t time.Time) error { return x.c.SetWriteDeadline(t) }

func (x adv6Framed) CloseWrite() error {
	if _, err := x.c.Write(x.trailer); err != nil {
		return err
	}
	return x.c.CloseWrite()
}

// TestAdv6CloseWriteWaits: the relay passes b's EOF on to a with a's
// CloseWrite, which waits to write its trailer because a's peer reads
// nothing; the other direction waits for a's peer. A cancel, Engine.Close
// or RelayHalfCloseTimeout must end the relay, CloseWrite's wait too (a
// has deadlines), with an error matching theirs, and leave a with no
// deadline.
func TestAdv6CloseWriteWaits(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		for _, kind := range []string{"unix", "net.Pipe"} {
			for _, how := range []string{"cancel", "close", "half-close"} {
				t.Run(fmt.Sprintf("%s/%s/%s", ec.name, kind, how), func(t *testing.T) {
					e := newCaseEngine(t, ec)
					ac, pa := unixPair(t)
					closeAtEnd(t, ac, pa)
					a := adv6Framed{ac, make([]byte, 8<<20)}
					b := adv6Ends[map[string]string{"unix": "wrapped-unix", "net.Pipe": "net.Pipe"}[kind]](t)
					if kind == "unix" {
						u, pb := unixPair(t)
						closeAtEnd(t, u, pb)
						b = adv6End{u, pb, nil}
					}
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					var opts []RelayOption
					if how == "half-close" {
						opts = append(opts, RelayHalfCloseTimeout(100*time.Millisecond))
					}
					res := startRelay(e, ctx, a, b.end, opts...)
					hello := []byte("hello")
					go func() {
						b.peer.Write(hello)
						if cw, ok := b.peer.(closeWriter); ok {
							cw.CloseWrite()
						} else {
							b.peer.Close()
						}
					}()
					got := make([]byte, len(hello))
					if _, err := io.ReadFull(pa, got); err != nil {
						t.Fatal(err)
					}
					// CloseWrite is under way, waiting for room.
					time.Sleep(50 * time.Millisecond)
					r, ok := endRelay(e, how, cancel, res)
					if !ok {
						pa.Close()
						b.peer.Close()
						r = <-res
						t.Fatalf("the relay did not end; once its peers closed: (%d, %d, %v)", r.aToB, r.bToA, r.err)
					}
					want := map[string]error{"cancel": context.Canceled, "close": ErrClosed, "half-close": os.ErrDeadlineExceeded}[how]
					if !errors.Is(r.err, want) || r.aToB != 0 || r.bToA != int64(len(hello)) {
						t.Errorf("Relay = (%d, %d, %v), want (0, %d, an error matching %v)", r.aToB, r.bToA, r.err, len(hello), want)
					}
					// No deadline left on a: a write that waits for its
					// peer to read completes once it does.
					go io.Copy(io.Discard, pa)
					if _, err := ac.Write(make([]byte, 16<<20)); err != nil {
						t.Errorf("writing to a after the relay: %v", err)
					}
				})
			}
		}
	}
}

// endRelay ends the relay behind res as how says ("cancel": its
// context; "close": Engine.Close; anything else: nothing, a timeout of
// its own ends it) and waits up to 10 s for it; ok is false if it did
// not end by then.
func endRelay(e *Engine, how string, cancel func(), res <-chan relayResult) (r relayResult, ok bool) {
	switch how {
	case "cancel":
		cancel()
	case "close":
		go e.Close()
	}
	return recvBy(res, time.Now().Add(10*time.Second))
}

// TestAdv6ResetBeforeCloseWrite: b's peer goes away after the relay has
// delivered its bytes to b, and only then does a's peer half-close, so
// that the relay's CloseWrite on b comes after. b->a has ended before
// (the caller shut b's reading down, or b's peer half-closed), so no
// read of b reports the loss: the CloseWrite must. shutdown(2) answers
// ENOTCONN on a TCP socket whose connection a reset has closed; the
// relay reports the reset the socket holds (SO_ERROR), ECONNRESET, or
// EPIPE where the peer had half-closed before it reset, and ENOTCONN
// only for a socket that was never connected. A unix socket's shutdown
// succeeds whatever its peer did: the relay ends without an error, and
// leaves the reset pending for the caller.
func TestAdv6ResetBeforeCloseWrite(t *testing.T) {
	fdtest.Check(t)
	hello := []byte("hello")
	for _, ec := range engineCases(t) {
		for _, c := range []struct {
			name string
			unix bool
			// endBToA ends b->a: "shut-read" (b.CloseRead, before
			// the relay) or "peer-half-close" (b's peer CloseWrite).
			endBToA string
			// gone: "reset" (SetLinger(0), Close), "close" (Close
			// with the relay's bytes unread), or "" (no peer at all:
			// b was never connected).
			gone string
			want error
		}{
			{"tcp/reset", false, "shut-read", "reset", syscall.ECONNRESET},
			{"tcp/half-close-then-reset", false, "peer-half-close", "reset", syscall.EPIPE},
			{"tcp/never-connected", false, "shut-read", "", syscall.ENOTCONN},
			{"unix/half-close-then-close-unread", true, "peer-half-close", "close", nil},
		} {
			t.Run(ec.name+"/"+c.name, func(t *testing.T) {
				e := newCaseEngine(t, ec)
				var a, pa, pb closeWriteConn
				var b closeReadConn
				if c.unix {
					a, pa = unixPair(t)
					b, pb = unixPair(t)
				} else {
					a, pa = tcpPair(t)
					if c.gone == "" {
						b = unconnectedTCP(t)
					} else {
						b, pb = tcpPair(t)
					}
				}
				closeAtEnd(t, a, pa, b)
				if pb != nil {
					closeAtEnd(t, pb)
				}
				if c.endBToA == "shut-read" {
					b.CloseRead() // ENOTCONN where b was never connected, but done
				}
				res := startRelay(e, context.Background(), a, b)
				wantAToB := int64(0)
				if pb != nil {
					// a->b delivers its bytes, which b's peer reads
					// (TCP) or leaves queued (unix).
					if _, err := pa.Write(hello); err != nil {
						t.Fatal(err)
					}
					wantAToB = int64(len(hello))
					if c.gone == "close" {
						awaitQueued(t, pb, len(hello))
					} else if _, err := io.ReadFull(pb, make([]byte, len(hello))); err != nil {
						t.Fatal(err)
					}
					if c.endBToA == "peer-half-close" {
						if err := pb.CloseWrite(); err != nil {
							t.Fatal(err)
						}
					}
				}
				// b->a has passed its EOF on.
				pa.SetReadDeadline(time.Now().Add(20 * time.Second))
				if n, err := io.Copy(io.Discard, pa); n != 0 || err != nil {
					t.Fatalf("a's peer read %d bytes, then %v; want EOF", n, err)
				}
				switch c.gone {
				case "reset":
					pb.(*net.TCPConn).SetLinger(0)
					pb.Close()
					awaitSocketError(t, b) // the reset has reached b
				case "close":
					pb.Close() // unix: b's error is set by the time Close returns
				}
				// Only now does a->b reach EOF, and CloseWrite b.
				if err := pa.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				r := waitRelay(t, res)
				t.Logf("Relay = (%d, %d, %v)", r.aToB, r.bToA, r.err)
				if c.want == nil && r.err != nil || c.want != nil && !errors.Is(r.err, c.want) {
					t.Errorf("Relay error = %v, want one matching %v", r.err, c.want)
				}
				if c.want != nil && c.want != syscall.ENOTCONN && errors.Is(r.err, syscall.ENOTCONN) {
					t.Errorf("Relay error = %v, matches ENOTCONN", r.err)
				}
				if r.err != nil && !strings.Contains(r.err.Error(), "a->b") {
					t.Errorf("Relay error = %v, does not say a->b met it", r.err)
				}
				if r.aToB != wantAToB || r.bToA != 0 {
					t.Errorf("Relay = (%d, %d), want (%d, 0)", r.aToB, r.bToA, wantAToB)
				}
				if c.gone == "close" {
					// The relay left b's pending error to the caller.
					if _, err := b.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
						t.Errorf("reading b after the relay: %v, want ECONNRESET", err)
					}
				}
			})
		}
	}
}

// closeWriteConn is a *net.TCPConn or a *net.UnixConn.
type closeWriteConn interface {
	net.Conn
	syscall.Conn
	CloseWrite() error
}

// closeReadConn is a *net.TCPConn or a *net.UnixConn.
type closeReadConn interface {
	closeWriteConn
	CloseRead() error
}

// unconnectedTCP is a *net.TCPConn of a TCP socket that never connected,
// as net.FileConn makes of one.
func unconnectedTCP(t *testing.T) *net.TCPConn {
	s, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(s), "unconnected")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn)
}

// awaitSocketError waits up to 20 s until c's socket has an error
// pending (poll(2) reports POLLERR), without reading it.
func awaitSocketError(t *testing.T, c syscall.Conn) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var revents int16
	rc.Control(func(s uintptr) {
		p := []unix.PollFd{{Fd: int32(s)}}
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
			if _, err := unix.Poll(p, 100); err != unix.EINTR && p[0].Revents != 0 {
				break
			}
		}
		revents = p[0].Revents
	})
	if revents&unix.POLLERR == 0 {
		t.Fatalf("poll(2) of b: revents %#x, want POLLERR", revents)
	}
}

// awaitQueued waits up to 20 s until c has n bytes to read (recv(2)
// with MSG_PEEK), leaving them unread.
func awaitQueued(t *testing.T, c closeWriteConn, n int) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, n)
	got := 0
	var rerr error
	err = rc.Read(func(s uintptr) bool {
		got, _, rerr = unix.Recvfrom(int(s), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return got >= n || rerr != nil && rerr != unix.EAGAIN
	})
	if got < n {
		t.Fatalf("%d bytes queued (%v, %v), want %d", got, rerr, err, n)
	}
}

// adv29Wrapped is a caller's wrapper of a TCP connection that gives its
// descriptor (the embedded *net.TCPConn's SyscallConn) and overrides
// CloseWrite to count its calls.
type adv29Wrapped struct {
	*net.TCPConn
	closeWrites atomic.Int32
}

func (w *adv29Wrapped) CloseWrite() error {
	w.closeWrites.Add(1)
	return w.TCPConn.CloseWrite()
}

// TestAdv29RelayWrapperCloseWrite relays through wrappers that embed
// *net.TCPConn: the bytes move in the kernel (the wrapper gives its
// descriptor), and the EOF of each direction is passed on through the
// wrapper's own CloseWrite, once, not the embedded connection's.
// Ending such a relay (cancel) clears the deadlines it set through the
// promoted setters.
func TestAdv29RelayWrapperCloseWrite(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, end := range []string{"eof", "cancel"} {
			t.Run(ec.name+"/"+end, func(t *testing.T) {
				x, px := tcpPair(t)
				y, py := tcpPair(t)
				closeAtEnd(t, x, px, y, py)
				a, b := &adv29Wrapped{TCPConn: x}, &adv29Wrapped{TCPConn: y}
				if end == "cancel" {
					ctx, cancel := context.WithCancel(context.Background())
					res := startRelay(e, ctx, a, b)
					px.Write([]byte("ping"))
					buf := make([]byte, 4)
					if _, err := io.ReadFull(py, buf); err != nil {
						t.Fatal(err)
					}
					cancel()
					if r := waitRelay(t, res); !errors.Is(r.err, context.Canceled) || r.aToB != 4 {
						t.Fatalf("relay: %+v", r)
					}
					if a.closeWrites.Load()+b.closeWrites.Load() != 0 {
						t.Fatalf("a cancelled relay passed an EOF on")
					}
					checkUsable(t, a, px)
					checkUsable(t, b, py)
					return
				}
				da, db := relayData(1<<20+3, 1), relayData(700<<10, 2)
				ra, rb := converse(px, da, len(db)), converse(py, db, len(da))
				aToB, bToA, err := e.Relay(context.Background(), a, b)
				gotA, gotB := <-ra, <-rb
				if err != nil || aToB != int64(len(da)) || bToA != int64(len(db)) ||
					gotB.n != int64(len(da)) || gotA.n != int64(len(db)) || gotA.err != nil || gotB.err != nil {
					t.Fatalf("relay: %d, %d, %v; peers: %+v, %+v", aToB, bToA, err, gotA, gotB)
				}
				if a.closeWrites.Load() != 1 || b.closeWrites.Load() != 1 {
					t.Fatalf("CloseWrite calls: a %d, b %d, want 1 each", a.closeWrites.Load(), b.closeWrites.Load())
				}
			})
		}
	}
}
