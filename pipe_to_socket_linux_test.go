//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
	"github.com/pipes-go/pipes/splice"
)

// Adversarial tests of the engine's pipe -> socket copies, which move
// their bytes through a pool pipe (splice's throughPipe) on both
// backends.

// adv22Source returns a pipe source of kind "pipereader" (New), "os"
// (os.Pipe), "blocking" (pipe2 without O_NONBLOCK: *os.Files the
// netpoller does not watch) or "fd" (os.Pipe after r.Fd(), which puts
// it in blocking mode), and a writer of its other end; both are closed
// when the test ends, the read end first.
func adv22Source(t *testing.T, kind string) (r io.Reader, w io.WriteCloser, closeR func() error) {
	t.Helper()
	switch kind {
	case "pipereader":
		pr, pw, err := New()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pr.Close(); pw.Close() })
		return pr, pw, pr.Close
	case "os", "fd":
		or, ow, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		if kind == "fd" {
			or.Fd()
		}
		t.Cleanup(func() { or.Close(); ow.Close() })
		return or, ow, or.Close
	case "blocking":
		br, bw := blockingPipe(t)
		return br, bw, br.Close
	}
	t.Fatalf("unknown source kind %q", kind)
	return nil, nil, nil
}

var adv22SourceKinds = []string{"pipereader", "os", "blocking", "fd"}

// adv22Undelivered returns the bytes err reports undelivered.
func adv22Undelivered(err error) int64 {
	var u *splice.UndeliveredError
	if errors.As(err, &u) {
		return u.N
	}
	return 0
}

// TestAdv22EngineCopyPipeToSocket: Copy from every kind of pipe source
// (the package's PipeReader, os.Pipe, a blocking pipe, one put in
// blocking mode by Fd) into TCP and unix sockets delivers every byte in
// order, for sizes around the page, io.Copy's buffer and the pool pipe,
// on every engine of the backend under test, through a pool of one
// small pipe too, and leaves no pipe of the pool in use.
func TestAdv22EngineCopyPipeToSocket(t *testing.T) {
	fdtest.Check(t)
	sizes := []int{0, 1, 4095, 64<<10 - 1, 64<<10 + 1, 1<<20 - 1, 1<<20 + 1}
	for _, ec := range engineCases(t) {
		for _, pool := range []string{"default", "one-page"} {
			opts := ec.opts
			if pool == "one-page" {
				opts = append(append([]Option(nil), ec.opts...), WithPipeSize(4096), WithMaxPipes(1))
			}
			e := newTestEngine(t, opts...)
			for _, kind := range adv22SourceKinds {
				for _, network := range []string{"tcp", "unix"} {
					t.Run(fmt.Sprintf("%s/%s/%s/%s", ec.name, pool, kind, network), func(t *testing.T) {
						for _, size := range sizes {
							data := fdtest.Random(size)
							r, w, _ := adv22Source(t, kind)
							go func() {
								w.Write(data)
								w.Close()
							}()
							end, peer := ptConnPair(t, network)
							got := make(chan []byte, 1)
							go func() { b, _ := io.ReadAll(peer); got <- b }()
							var n int64
							var err error
							fdtest.Within(t, 20*time.Second, func() { n, err = e.Copy(end, r) })
							if err != nil || n != int64(size) {
								t.Fatalf("size %d: Copy = %d, %v", size, n, err)
							}
							end.Close()
							if b := <-got; !bytes.Equal(b, data) {
								t.Fatalf("size %d: the peer got %d bytes, not the source's", size, len(b))
							}
						}
						if st := e.sys.pool.Stats(); st.InUse != 0 {
							t.Fatalf("pool after the copies: %+v", st)
						}
					})
				}
			}
		}
	}
}

// TestAdv22EngineLimitedStalled: a copy of an *io.LimitedReader around a
// pipe into a socket whose peer reads nothing ends by cancellation, by a
// Close of the socket, or by CopyAsync's context; N is then lowered by
// exactly the bytes taken from the pipe (written and undelivered), the
// peer got exactly the written ones, and the rest is still in the pipe,
// in order. The error matches ctx's or net.ErrClosed.
func TestAdv22EngineLimitedStalled(t *testing.T) {
	fdtest.Check(t)
	const total = 16 << 20
	const limit = 12<<20 + 5
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, kind := range adv22SourceKinds {
			for _, network := range []string{"tcp", "unix"} {
				for _, how := range []string{"cancel", "close", "async-cancel"} {
					t.Run(fmt.Sprintf("%s/%s/%s/%s", ec.name, kind, network, how), func(t *testing.T) {
						data := fdtest.Random(total)
						r, w, _ := adv22Source(t, kind)
						fed := fdtest.WriteAndClose(w, data)
						end, peer := ptConnPair(t, network)
						lr := &io.LimitedReader{R: r, N: limit}
						ctx, cancel := context.WithCancel(context.Background())
						defer cancel()
						var n int64
						var err error
						var f *Future
						done := make(chan struct{})
						if how == "async-cancel" {
							f = e.CopyAsync(ctx, end, lr)
							go func() { n, err = f.Wait(); close(done) }()
						} else {
							go func() {
								defer close(done)
								n, err = e.CopyContext(ctx, end, lr)
							}()
						}
						written := func() int64 {
							if f != nil {
								return f.Written()
							}
							return int64(e.Stats().Bytes)
						}
						fdtest.Within(t, 20*time.Second, func() {
							for {
								before := written()
								time.Sleep(20 * time.Millisecond)
								if before > 0 && written() == before {
									break
								}
							}
							if how == "close" {
								end.Close()
							} else {
								cancel()
							}
							<-done
						})
						switch {
						case how == "close" && !errors.Is(err, net.ErrClosed):
							t.Fatalf("Copy = %d, %v; want net.ErrClosed", n, err)
						case how != "close" && !errors.Is(err, context.Canceled):
							t.Fatalf("Copy = %d, %v; want context.Canceled", n, err)
						}
						if f != nil && f.Written() != n {
							t.Fatalf("Future: Wait = %d, Written = %d", n, f.Written())
						}
						lost := adv22Undelivered(err)
						if taken := limit - lr.N; taken != n+lost {
							t.Fatalf("Copy = %d, %v: N lowered by %d, want %d (written + undelivered)", n, err, taken, n+lost)
						}
						end.Close()
						peerGot, _ := io.ReadAll(peer)
						rest, rerr := io.ReadAll(r)
						<-fed
						if rerr != nil {
							t.Fatal(rerr)
						}
						if n+lost+int64(len(rest)) != total || !bytes.Equal(rest, data[n+lost:]) || !bytes.Equal(peerGot, data[:n]) {
							t.Fatalf("Copy = %d, %v; the peer got %d, the source holds %d: %d of %d unaccounted for",
								n, err, len(peerGot), len(rest), total-n-lost-int64(len(rest)), total)
						}
						if st := e.sys.pool.Stats(); st.InUse != 0 {
							t.Fatalf("pool after the copy: %+v", st)
						}
					})
				}
			}
		}
	}
}

// TestAdv22EngineRateLimitedPipe: a rate-limited pipe -> socket copy
// delivers every byte in order, its limit honoured (an *io.LimitedReader
// around the RateLimitedReader, and the other way round), on every
// engine.
func TestAdv22EngineRateLimitedPipe(t *testing.T) {
	fdtest.Check(t)
	const total = 256<<10 + 3
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, kind := range adv22SourceKinds {
			for _, wrap := range []string{"rate", "limited-rate", "rate-limited"} {
				t.Run(fmt.Sprintf("%s/%s/%s", ec.name, kind, wrap), func(t *testing.T) {
					data := fdtest.Random(total)
					r, w, _ := adv22Source(t, kind)
					fed := fdtest.WriteAndClose(w, data)
					end, peer := ptConnPair(t, "tcp")
					got := make(chan []byte, 1)
					go func() { b, _ := io.ReadAll(peer); got <- b }()
					l := NewLimiter(16<<20, 8<<10)
					var src io.Reader
					want := int64(total)
					var lr *io.LimitedReader
					switch wrap {
					case "rate":
						src = RateLimit(r, l)
					case "limited-rate":
						want = total / 2
						lr = &io.LimitedReader{R: RateLimit(r, l), N: want}
						src = lr
					case "rate-limited":
						want = total / 2
						lr = &io.LimitedReader{R: r, N: want}
						src = RateLimit(lr, l)
					}
					var n int64
					var err error
					fdtest.Within(t, 20*time.Second, func() { n, err = e.Copy(end, src) })
					if err != nil || n != want {
						t.Fatalf("Copy = %d, %v; want %d", n, err, want)
					}
					if lr != nil && lr.N != 0 {
						t.Fatalf("N = %d after the copy, want 0", lr.N)
					}
					end.Close()
					if b := <-got; !bytes.Equal(b, data[:want]) {
						t.Fatalf("the peer got %d bytes, not the source's first %d", len(b), want)
					}
					rest, _ := io.ReadAll(r)
					<-fed
					if !bytes.Equal(rest, data[want:]) {
						t.Fatalf("the source holds %d bytes, want %d", len(rest), total-want)
					}
				})
			}
		}
	}
}

// TestAdv22RelayFifoEcho: Relay between a FIFO opened read-write (its
// reads return what its writes put in: an echo) and a socket: every
// byte the peer sends comes back, in order, through the FIFO -> socket
// direction (a pipe -> socket copy through a pool pipe); once the peer
// has its echo, cancelling ends the relay, with each direction's count
// that of the bytes echoed.
func TestAdv22RelayFifoEcho(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		for _, network := range []string{"tcp", "unix"} {
			t.Run(ec.name+"/"+network, func(t *testing.T) {
				e := newTestEngine(t, append(append([]Option(nil), ec.opts...), WithMaxPipes(2), WithPipeSize(64<<10))...)
				path := filepath.Join(t.TempDir(), "fifo")
				if err := unix.Mkfifo(path, 0o600); err != nil {
					t.Fatal(err)
				}
				fifo, err := os.OpenFile(path, os.O_RDWR|unix.O_NONBLOCK, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer fifo.Close()
				end, peer := ptConnPair(t, network)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				type result struct {
					aToB, bToA int64
					err        error
				}
				res := make(chan result, 1)
				go func() {
					a, b, err := e.Relay(ctx, fifo, end)
					res <- result{a, b, err}
				}()
				data := fdtest.Random(8<<20 + 17)
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					peer.Write(data)
				}()
				got := make([]byte, len(data))
				var rerr error
				fdtest.Within(t, 20*time.Second, func() {
					_, rerr = io.ReadFull(peer, got)
					wg.Wait()
				})
				if rerr != nil || !bytes.Equal(got, data) {
					t.Fatalf("the echo: %v; equal to the bytes sent: %v", rerr, bytes.Equal(got, data))
				}
				var rr result
				fdtest.Within(t, 20*time.Second, func() { cancel(); rr = <-res })
				if !errors.Is(rr.err, context.Canceled) || rr.aToB != int64(len(data)) || rr.bToA != int64(len(data)) {
					t.Fatalf("Relay = %d, %d, %v; want %d each way, context.Canceled", rr.aToB, rr.bToA, rr.err, len(data))
				}
				if st := e.sys.pool.Stats(); st.InUse != 0 {
					t.Fatalf("pool after the relay: %+v", st)
				}
			})
		}
	}
}
