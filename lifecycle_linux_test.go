//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Adversarial tests of the lifecycle of operations: a context done
// before the operation starts, Close called from many goroutines at
// once, rate limits that cannot grant a byte, and the end of a paced
// fan-out.

// adv5Source returns a source of kind "file", "unix" (a socket whose
// peer sends data and closes), "pipe" (a *PipeReader likewise) or
// "reader" (no descriptor) that yields data.
func adv5Source(t *testing.T, kind string, data []byte) io.Reader {
	t.Helper()
	switch kind {
	case "file":
		return fdtest.TempFile(t, data)
	case "unix":
		a, b := unixPair(t)
		t.Cleanup(func() { a.Close(); b.Close() })
		go func() { a.Write(data); a.CloseWrite() }()
		return b
	case "pipe":
		r, w, err := New()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); w.Close() })
		go func() { w.Write(data); w.Close() }()
		return r
	case "reader":
		return bytes.NewReader(data)
	}
	t.Fatalf("unknown source kind %q", kind)
	return nil
}

// adv5Sink returns a unix socket whose peer reads everything, and a
// finish that closes it and returns what the peer got.
func adv5Sink(t *testing.T) (*net.UnixConn, func() []byte) {
	a, b := unixPair(t)
	t.Cleanup(func() { a.Close(); b.Close() })
	got := make(chan []byte, 1)
	go func() {
		x, _ := io.ReadAll(b)
		got <- x
	}()
	return a, func() []byte {
		a.Close()
		x := <-got
		got <- x
		return x
	}
}

// TestAdv5NotStarted runs every operation with a context cancelled with
// a cause before it starts: it must copy nothing and fail with an error
// matching context.Canceled and the cause, as CopyContext's and
// Relay's do ("one builder makes every cancellation error").
func TestAdv5NotStarted(t *testing.T) {
	fdtest.Check(t)
	cause := errors.New("shutting down")
	ops := []struct {
		name string
		run  func(e *Engine, ctx context.Context, dst io.Writer, src io.Reader) (int64, error)
	}{
		{"CopyAsync", func(e *Engine, ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
			return e.CopyAsync(ctx, dst, src).Wait()
		}},
		{"CopyContext", func(e *Engine, ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
			return e.CopyContext(ctx, dst, src)
		}},
		{"CopyBatch", func(e *Engine, ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
			r := e.CopyBatch(ctx, []Pair{{dst, src}})[0]
			return r.Written, r.Err
		}},
		{"FanOut", func(e *Engine, ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
			r := e.FanOut(ctx, src, []io.Writer{dst})[0]
			return r.Written, r.Err
		}},
		{"Relay", func(e *Engine, ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
			x, y, err := e.Relay(ctx, dst.(io.ReadWriter), src.(io.ReadWriter))
			return x + y, err
		}},
	}
	for _, ec := range engineCases(t) {
		e := newCaseEngine(t, ec)
		for _, op := range ops {
			for _, kind := range []string{"unix", "file"} {
				if op.name == "Relay" && kind == "file" {
					continue
				}
				t.Run(ec.name+"/"+op.name+"/"+kind, func(t *testing.T) {
					data := fdtest.Random(64 << 10)
					src := adv5Source(t, kind, data)
					dst, finish := adv5Sink(t)
					ctx, cancel := context.WithCancelCause(context.Background())
					cancel(cause)
					n, err := op.run(e, ctx, dst, src)
					if n != 0 || !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
						t.Errorf("(%d, %v), want (0, an error matching context.Canceled and the cause)", n, err)
					}
					if got := finish(); len(got) != 0 {
						t.Errorf("the destination got %d bytes", len(got))
					}
					// The source is untouched: all of it is still there.
					if rest, _ := io.ReadAll(src); !bytes.Equal(rest, data) {
						t.Errorf("the source holds %d bytes after the operation, want %d", len(rest), len(data))
					}
				})
			}
		}
	}
}

// TestAdv5ConcurrentClose closes an engine from many goroutines at once
// while operations of every kind wait on quiet peers: every Close must
// return only once every operation has returned (Close "waits for them
// to return"; a CopyAsync's Future is done), each with an error
// wrapping ErrClosed.
func TestAdv5ConcurrentClose(t *testing.T) {
	fdtest.Check(t)
	const (
		ops     = 16
		closers = 8
	)
	starts := []struct {
		name string
		// start starts an operation; its error arrives on the
		// channel, and done, if not nil, reports whether it is over.
		start func(t *testing.T, e *Engine) (ch <-chan error, done func() bool)
	}{
		{"CopyAsync", func(t *testing.T, e *Engine) (<-chan error, func() bool) {
			a, b := unixPair(t)
			c, d := unixPair(t)
			t.Cleanup(func() { a.Close(); b.Close(); c.Close(); d.Close() })
			ch := make(chan error, 1)
			f := e.CopyAsync(context.Background(), c, b)
			go func() { _, err := f.Wait(); ch <- err }()
			return ch, func() bool { return isDone(f) }
		}},
		{"Copy", func(t *testing.T, e *Engine) (<-chan error, func() bool) {
			a, b := tcpPair(t)
			c, d := tcpPair(t)
			t.Cleanup(func() { a.Close(); b.Close(); c.Close(); d.Close() })
			ch := make(chan error, 1)
			go func() { _, err := e.Copy(c, b); ch <- err }()
			return ch, nil
		}},
		{"Relay", func(t *testing.T, e *Engine) (<-chan error, func() bool) {
			a, b := unixPair(t)
			c, d := tcpPair(t)
			t.Cleanup(func() { a.Close(); b.Close(); c.Close(); d.Close() })
			ch := make(chan error, 1)
			go func() { _, _, err := e.Relay(context.Background(), b, c); ch <- err }()
			return ch, nil
		}},
		{"FanOut", func(t *testing.T, e *Engine) (<-chan error, func() bool) {
			a, b := unixPair(t)
			c, d := unixPair(t)
			t.Cleanup(func() { a.Close(); b.Close(); c.Close(); d.Close() })
			ch := make(chan error, 1)
			go func() { ch <- e.FanOut(context.Background(), b, []io.Writer{c})[0].Err }()
			return ch, nil
		}},
	}
	for _, ec := range engineCases(t) {
		for _, s := range starts {
			t.Run(ec.name+"/"+s.name, func(t *testing.T) {
				e, err := NewEngine(ec.opts...)
				if err != nil {
					t.Fatal(err)
				}
				done := make([]<-chan error, ops)
				over := make([]func() bool, ops)
				for i := range done {
					done[i], over[i] = s.start(t, e)
				}
				for e.Stats().InFlight < ops {
					time.Sleep(time.Millisecond)
				}
				var wg sync.WaitGroup
				early := make(chan string, 2*closers)
				for range closers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := e.Close(); err != nil {
							t.Errorf("Close: %v", err)
						}
						if n := e.Stats().InFlight; n != 0 {
							early <- fmt.Sprintf("a Close returned with %d operations in flight", n)
						}
						for i, over := range over {
							if over != nil && !over() {
								early <- fmt.Sprintf("a Close returned before operation %d was done", i)
								return
							}
						}
					}()
				}
				closed := make(chan struct{})
				go func() { wg.Wait(); close(closed) }()
				if _, ok := recvBy(closed, time.Now().Add(20*time.Second)); !ok {
					t.Fatal("Close still runs 20s later")
				}
				close(early)
				for msg := range early {
					t.Error(msg)
				}
				for i, ch := range done {
					err, ok := recvBy(ch, time.Now().Add(20*time.Second))
					if !ok {
						t.Fatalf("operation %d still runs 20s after Close", i)
					}
					if !errors.Is(err, ErrClosed) {
						t.Errorf("operation %d: %v, want an error wrapping ErrClosed", i, err)
					}
				}
			})
		}
	}
}

// TestAdv5BadLimiter paces copies and fan-outs by a Limiter that
// NewLimiter did not make (the zero Limiter, whose rate is 0, and a nil
// one): each must fail with an error saying so, having copied nothing,
// never report a short copy as a success, and never panic.
func TestAdv5BadLimiter(t *testing.T) {
	fdtest.Check(t)
	limiters := []struct {
		name string
		l    *Limiter
	}{{"zero", &Limiter{}}, {"nil", nil}}
	ops := []struct {
		name string
		run  func(e *Engine, dst io.Writer, src io.Reader) (int64, error)
	}{
		{"Copy", func(e *Engine, dst io.Writer, src io.Reader) (int64, error) { return e.Copy(dst, src) }},
		{"CopyAsync", func(e *Engine, dst io.Writer, src io.Reader) (int64, error) {
			return e.CopyAsync(context.Background(), dst, src).Wait()
		}},
		{"FanOut", func(e *Engine, dst io.Writer, src io.Reader) (int64, error) {
			r := e.FanOut(context.Background(), src, []io.Writer{dst})[0]
			return r.Written, r.Err
		}},
		{"Read", func(_ *Engine, dst io.Writer, src io.Reader) (int64, error) {
			return io.Copy(dst, struct{ io.Reader }{src})
		}},
	}
	for _, ec := range engineCases(t) {
		e := newCaseEngine(t, ec)
		for _, lim := range limiters {
			for _, op := range ops {
				for _, kind := range []string{"file", "unix", "pipe", "reader"} {
					t.Run(fmt.Sprintf("%s/%s/%s/%s", ec.name, lim.name, op.name, kind), func(t *testing.T) {
						src := adv5Source(t, kind, fdtest.Random(256<<10))
						dst, finish := adv5Sink(t)
						var n int64
						var err error
						func() {
							defer func() {
								if p := recover(); p != nil {
									err = fmt.Errorf("panic: %v", p)
								}
							}()
							n, err = op.run(e, dst, RateLimit(src, lim.l))
						}()
						if n != 0 || !errors.Is(err, errBadLimiter) {
							t.Errorf("(%d, %v), want (0, an error wrapping errBadLimiter)", n, err)
						}
						if got := finish(); len(got) != 0 {
							t.Errorf("the destination got %d bytes", len(got))
						}
					})
				}
			}
		}
	}
}

// TestAdv5FanOutPaced fans out a source paced by a Limiter (RateLimit),
// which the Engine's methods recognise: a paced fan-out delivers every
// byte, on the kernel path where the source has a descriptor, and a
// cancel or Close ends it while it waits for its next grant, however
// far away that grant is.
func TestAdv5FanOutPaced(t *testing.T) {
	fdtest.Check(t)
	const size = 256 << 10
	data := fdtest.Random(size)
	for _, ec := range engineCases(t) {
		for _, kind := range []string{"file", "unix", "pipe", "reader"} {
			for _, how := range []string{"eof", "limited", "cancel", "close"} {
				t.Run(ec.name+"/"+kind+"/"+how, func(t *testing.T) {
					e, err := NewEngine(ec.opts...)
					if err != nil {
						t.Fatal(err)
					}
					defer e.Close()
					// The bucket starts with 64 KiB, then grants 48 KiB
					// every 48 s: after the first grant the fan-out waits.
					l := NewLimiter(1<<10, 64<<10)
					var src io.Reader = adv5Source(t, kind, data)
					want := data[:64<<10]
					if how == "eof" || how == "limited" {
						l = NewLimiter(8<<20, 64<<10) // the whole source in 30-ish ms
						want = data
					}
					src = RateLimit(src, l)
					var lr *io.LimitedReader
					if how == "limited" {
						want = data[:size-4097]
						lr = &io.LimitedReader{R: src, N: int64(len(want))}
						src = lr
					}
					ctx, cancel := context.WithCancelCause(context.Background())
					defer cancel(nil)
					dst, finish := adv5Sink(t)
					dst2, finish2 := adv5Sink(t)
					before := e.Stats()
					res := make(chan []Result, 1)
					go func() { res <- e.FanOut(ctx, src, []io.Writer{dst, dst2}) }()
					switch how {
					case "cancel":
						time.Sleep(50 * time.Millisecond)
						cancel(errors.New("stopped by the test"))
					case "close":
						time.Sleep(50 * time.Millisecond)
						closed := make(chan error, 1)
						go func() { closed <- e.Close() }()
						if _, ok := recvBy(closed, time.Now().Add(20*time.Second)); !ok {
							t.Fatal("Close still runs 20s later")
						}
					}
					rs, ok := recvBy(res, time.Now().Add(20*time.Second))
					if !ok {
						t.Fatalf("FanOut (%s) still runs 20s later", how)
					}
					for i, got := range [][]byte{finish(), finish2()} {
						r := rs[i]
						if r.Written != int64(len(got)) || !bytes.Equal(got, data[:len(got)]) {
							t.Errorf("destination %d: Written %d, got %d bytes, the source's first: %v", i, r.Written, len(got), bytes.Equal(got, data[:len(got)]))
						}
						switch how {
						case "eof", "limited":
							if r.Err != nil || !bytes.Equal(got, want) {
								t.Errorf("destination %d: (%d, %v), want (%d, nil)", i, r.Written, r.Err, len(want))
							}
						case "cancel":
							if !errors.Is(r.Err, context.Canceled) || len(got) > len(want) {
								t.Errorf("destination %d: (%d, %v), want at most %d bytes and context.Canceled", i, r.Written, r.Err, len(want))
							}
						case "close":
							if !errors.Is(r.Err, ErrClosed) || len(got) > len(want) {
								t.Errorf("destination %d: (%d, %v), want at most %d bytes and ErrClosed", i, r.Written, r.Err, len(want))
							}
						}
					}
					if lr != nil && lr.N != 0 {
						t.Errorf("LimitedReader.N = %d after the fan-out, want 0", lr.N)
					}
					if st := e.Stats(); kind != "reader" && st.Userspace != before.Userspace {
						t.Errorf("a paced fan-out from a %s went through userspace: %+v", kind, st)
					}
				})
			}
		}
	}
}
