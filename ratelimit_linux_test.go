//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestRateLimit copies through a Limiter on every path and checks that
// the copy took at least as long as the rate allows (the bucket starts
// full, so its burst comes free) and not grossly longer. The machine is
// noisy: the upper bound is wide; the bench measures precisely.
func TestRateLimit(t *testing.T) {
	fdtest.Check(t)
	const rate = 8 << 20 // 8 MiB/s
	const burst = 256 << 10
	const size = 2<<20 + burst // 0.25 s at the rate
	want := time.Duration(float64(size-burst) / rate * float64(time.Second))
	data := fdtest.Random(size)
	pick := func(name string, names ...string) bool {
		for _, n := range names {
			if n == name {
				return true
			}
		}
		return false
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		t.Run(ec.name, func(t *testing.T) {
			for _, sk := range sourceKinds {
				if !pick(sk.name, "file", "pipe", "tcp", "reader") {
					continue
				}
				for _, dk := range sinkKinds {
					if !pick(dk.name, "pipe", "tcp", "writer") {
						continue
					}
					t.Run(sk.name+"->"+dk.name, func(t *testing.T) {
						t.Parallel()
						src := sk.make(t, data)
						dst := dk.make(t)
						l := NewLimiter(rate, burst)
						start := time.Now()
						n, err := e.Copy(dst.w, RateLimit(src.r, l))
						took := time.Since(start)
						src.close()
						got, sum := dst.finish()
						if n != size || err != nil || got != size || sum != sha256.Sum256(data) {
							t.Fatalf("copy = (%d, %v), %d bytes received", n, err, got)
						}
						if took < want*95/100 || took > 3*want {
							t.Errorf("took %v at %d B/s, want about %v", took, rate, want)
						}
					})
				}
			}
		})
	}
}

// TestRateLimitShared runs four copies through one Limiter: their sum
// keeps to its rate.
func TestRateLimitShared(t *testing.T) {
	const rate = 8 << 20
	const burst = 256 << 10
	const each = 1 << 20
	l := NewLimiter(rate, burst)
	want := time.Duration(float64(4*each-burst) / rate * float64(time.Second))
	e := newTestEngine(t)
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		a, b := tcpPair(t)
		c, d := tcpPair(t)
		go func() { c.Write(fdtest.Random(each)); c.Close() }()
		wg.Add(2)
		go func() { defer wg.Done(); io.Copy(io.Discard, b); b.Close() }()
		go func() {
			defer wg.Done()
			defer a.Close()
			defer d.Close()
			if n, err := e.Copy(a, RateLimit(d, l)); n != each || err != nil {
				t.Errorf("copy = (%d, %v)", n, err)
			}
		}()
	}
	wg.Wait()
	if took := time.Since(start); took < want*95/100 || took > 3*want {
		t.Errorf("4 copies sharing %d B/s took %v, want about %v", rate, took, want)
	}
}

// TestRateLimitCancel checks that a copy waiting for its Limiter ends
// when its context does.
func TestRateLimitCancel(t *testing.T) {
	e := newTestEngine(t)
	l := NewLimiter(1024, 4096) // 1 KiB/s: the second grant is 4 s away
	a, b := tcpPair(t)
	defer a.Close()
	defer b.Close()
	go b.Write(fdtest.Random(64 << 10))
	dst, sink := tcpPair(t)
	defer dst.Close()
	defer sink.Close()
	ctx, cancel := context.WithCancel(context.Background())
	f := e.CopyAsync(ctx, dst, RateLimit(a, l))
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case <-f.Done():
	case <-time.After(time.Second):
		t.Fatal("a paced copy did not end within 1 s of its cancel")
	}
	if n, err := f.Wait(); !errors.Is(err, context.Canceled) || n != 4096 {
		t.Fatalf("copy = (%d, %v), want (4096, context.Canceled)", n, err)
	}
}

// TestLimiterTakeCause: a Take that its context ends fails with an error
// wrapping both ctx.Err() and the context's cause, as its doc says.
func TestLimiterTakeCause(t *testing.T) {
	cause := errors.New("shutting down")
	for _, tc := range []struct {
		name   string
		cancel func(context.CancelCauseFunc)
		causes []error
	}{
		{"cancel", func(c context.CancelCauseFunc) { c(nil) }, []error{context.Canceled}},
		{"cancel with a cause", func(c context.CancelCauseFunc) { c(cause) }, []error{context.Canceled, cause}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLimiter(1, 1)
			if _, err := l.Take(context.Background(), 1<<20); err != nil {
				t.Fatal(err) // the bucket is now empty: the next grant is a second away
			}
			ctx, cancel := context.WithCancelCause(context.Background())
			tc.cancel(cancel)
			n, err := l.Take(ctx, 1)
			if n != 0 || err == nil {
				t.Fatalf("Take = (%d, %v), want an error", n, err)
			}
			for _, want := range tc.causes {
				if !errors.Is(err, want) {
					t.Errorf("Take: %v, want an error wrapping %v", err, want)
				}
			}
		})
	}
}

// TestRefillWait: the wait for a refill is never negative. Beyond
// time.Duration's range (2^40 bytes at 1 byte a second: 35,000 years)
// the float conversion gave math.MinInt64, a timer of it fired at once,
// and Take spun on the CPU until its context ended.
func TestRefillWait(t *testing.T) {
	for _, c := range []struct {
		need, rate float64
		want       time.Duration
	}{
		{1, 1, time.Second},
		{1 << 20, 1 << 20, time.Second},
		{3, 1e9, 3 * time.Nanosecond},
		{1 << 40, 1, math.MaxInt64},
		{math.MaxInt64, 1e-3, math.MaxInt64},
	} {
		if got := refillWait(c.need, c.rate); got != c.want {
			t.Errorf("refillWait(%g, %g) = %v; want %v", c.need, c.rate, got, c.want)
		}
	}
}

// TestAdv32fNestedLimiterCancel: a per-copy Limiter around a Limiter its
// copies share (RateLimit of RateLimit, also with an *io.LimitedReader
// between the two) is a documented use: one Limiter limits a sum, one
// per copy a copy; so is a shared Limiter behind two limits. The copy recognises the outer one; the inner one
// was read through its Read, whose wait for a grant had no context: a
// cancelled copy waited on for the shared Limiter's grant (here, hours
// of it at 1 byte/s), and so did Engine.Close. The wait must end with
// the cancel, with an error wrapping ctx.Err().
func TestAdv32fNestedLimiterCancel(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(100 << 10)
	srcs := []struct {
		name string
		r    func(t *testing.T) io.Reader
	}{
		{"reader", func(t *testing.T) io.Reader { return bytes.NewReader(data) }},
		{"file", func(t *testing.T) io.Reader { return fdtest.TempFile(t, data) }},
	}
	nests := []struct {
		name string
		wrap func(r io.Reader, shared, own *Limiter) io.Reader
	}{
		{"paced-paced", func(r io.Reader, shared, own *Limiter) io.Reader {
			return RateLimit(RateLimit(r, shared), own)
		}},
		{"paced-limited-paced", func(r io.Reader, shared, own *Limiter) io.Reader {
			return RateLimit(io.LimitReader(RateLimit(r, shared), 50<<10), own)
		}},
		{"limited-paced-paced", func(r io.Reader, shared, own *Limiter) io.Reader {
			return io.LimitReader(RateLimit(RateLimit(r, shared), own), 50<<10)
		}},
		// No Limiter outside: the copy takes the outer limit off and
		// reads the inner one, behind which the shared Limiter waits.
		{"limited-limited-paced", func(r io.Reader, shared, _ *Limiter) io.Reader {
			return io.LimitReader(io.LimitReader(RateLimit(r, shared), 80<<10), 50<<10)
		}},
	}
	apis := []struct {
		name string
		run  func(e *Engine, ctx context.Context, src io.Reader) (int64, error)
	}{
		{"CopyContext", func(e *Engine, ctx context.Context, src io.Reader) (int64, error) {
			return e.CopyContext(ctx, io.Discard, src)
		}},
		{"CopyAsync", func(e *Engine, ctx context.Context, src io.Reader) (int64, error) {
			return e.CopyAsync(ctx, io.Discard, src).Wait()
		}},
		{"CopyBatch", func(e *Engine, ctx context.Context, src io.Reader) (int64, error) {
			r := e.CopyBatch(ctx, []Pair{{Dst: io.Discard, Src: src}})[0]
			return r.Written, r.Err
		}},
		{"FanOut", func(e *Engine, ctx context.Context, src io.Reader) (int64, error) {
			var b bytes.Buffer
			r := e.FanOut(ctx, src, []io.Writer{&b, io.Discard})[0]
			return r.Written, r.Err
		}},
	}
	for _, ec := range engineCases(t) {
		for _, s := range srcs {
			for _, nest := range nests {
				for _, api := range apis {
					t.Run(ec.name+"/"+s.name+"/"+nest.name+"/"+api.name, func(t *testing.T) {
						// Closed once the copy has returned: a copy
						// that does not would hang Close.
						e, err := NewEngine(ec.opts...)
						if err != nil {
							t.Fatal(err)
						}
						// The shared bucket, emptied: its next grant is
						// hours away.
						shared := NewLimiter(1, 64<<10)
						if _, err := shared.Take(context.Background(), 64<<10); err != nil {
							t.Fatal(err)
						}
						src := nest.wrap(s.r(t), shared, NewLimiter(1<<30, 0))
						ctx, cancel := context.WithCancel(context.Background())
						defer cancel()
						type result struct {
							n   int64
							err error
						}
						done := make(chan result, 1)
						go func() {
							n, err := api.run(e, ctx, src)
							done <- result{n, err}
						}()
						// The copy waits for the shared Limiter, holding
						// its turn.
						fdtest.Within(t, 10*time.Second, func() {
							for len(shared.turn) == 0 {
								time.Sleep(time.Millisecond)
							}
						})
						cancel()
						var r result
						select {
						case r = <-done:
						case <-time.After(10 * time.Second):
							// A hang guard, not a timing: the wait is hours.
							t.Fatalf("%s still waiting for the shared Limiter 10s after the cancel", api.name)
						}
						closeWithin(t, e, 10*time.Second)
						if r.n != 0 || !errors.Is(r.err, context.Canceled) {
							t.Errorf("%s = %d, %v; want 0 and an error wrapping context.Canceled", api.name, r.n, r.err)
						}
					})
				}
			}
		}
	}
}

// TestAdv32fTakeEndedContext: Limiter.Take with a context that has
// ended fails with its error and takes nothing, as documented, however
// many bytes the bucket holds: its turn was free, and select took it or
// the context's end at random, and a full bucket then granted bytes to
// about every other call.
func TestAdv32fTakeEndedContext(t *testing.T) {
	l := NewLimiter(1, 64<<10) // refills a byte a second: the test takes it all
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 200 {
		if n, err := l.Take(ctx, 1<<10); n != 0 || !errors.Is(err, context.Canceled) {
			t.Fatalf("Take %d with an ended context = %d, %v; want 0 and context.Canceled", i, n, err)
		}
	}
	// Nothing was taken: the bucket still holds (about) its burst.
	if n, err := l.Take(context.Background(), 64<<10); n < 64<<10-1 || err != nil {
		t.Errorf("Take after = %d, %v; want the full burst", n, err)
	}
}
