//go:build linux

package pipes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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
