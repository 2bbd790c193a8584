//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Adversarial tests, thirty-second round (f).

// adv32Writers is a writer of a slice type: its nil value is an empty
// list of writers, a working io.Writer that takes every byte, as an
// empty io.MultiWriter does.
type adv32Writers []io.Writer

func (ws adv32Writers) Write(p []byte) (int, error) {
	for _, w := range ws {
		if n, err := w.Write(p); err != nil {
			return n, err
		}
	}
	return len(p), nil
}

// adv32Counts is a writer of a map type with a value receiver that only
// reads the map: its nil value works too.
type adv32Counts map[string]io.Writer

func (c adv32Counts) Write(p []byte) (int, error) {
	if w := c["tee"]; w != nil {
		return w.Write(p)
	}
	return len(p), nil
}

// adv32Chunks is a reader of a slice type whose nil value is at EOF.
type adv32Chunks [][]byte

func (c adv32Chunks) Read(p []byte) (int, error) {
	if len(c) == 0 {
		return 0, io.EOF
	}
	return copy(p, c[0]), nil
}

// TestAdv32fNilSliceAndMapEnds: a nil slice or map is a Go value whose
// methods may well work (an empty list of writers); io.Copy uses it as
// it is. Only a nil pointer (whose methods would dereference it) is
// refused by Copy, CopyAsync, CopyBatch and FanOut; a nil slice or map
// must get io.Copy's result.
func TestAdv32fNilSliceAndMapEnds(t *testing.T) {
	const data = "hello, nil slice"
	cases := []struct {
		name string
		dst  io.Writer
		src  func() io.Reader
	}{
		{"nil-slice-dst", adv32Writers(nil), func() io.Reader { return strings.NewReader(data) }},
		{"nil-map-dst", adv32Counts(nil), func() io.Reader { return strings.NewReader(data) }},
		{"nil-slice-src", io.Discard, func() io.Reader { return adv32Chunks(nil) }},
		{"nil-slice-src-limited", io.Discard, func() io.Reader { return io.LimitReader(adv32Chunks(nil), 5) }},
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, c := range cases {
			t.Run(ec.name+"/"+c.name, func(t *testing.T) {
				wantN, wantErr := io.Copy(c.dst, c.src())
				if wantErr != nil {
					t.Fatalf("io.Copy = %d, %v", wantN, wantErr)
				}
				if n, err := e.Copy(c.dst, c.src()); n != wantN || err != nil {
					t.Errorf("Copy = %d, %v; io.Copy = %d, nil", n, err, wantN)
				}
				if n, err := e.CopyAsync(context.Background(), c.dst, c.src()).Wait(); n != wantN || err != nil {
					t.Errorf("CopyAsync = %d, %v; io.Copy = %d, nil", n, err, wantN)
				}
				res := e.CopyBatch(context.Background(), []Pair{{Dst: c.dst, Src: c.src()}})
				if res[0].Written != wantN || res[0].Err != nil {
					t.Errorf("CopyBatch = %+v; io.Copy = %d, nil", res[0], wantN)
				}
				var buf bytes.Buffer
				res = e.FanOut(context.Background(), c.src(), []io.Writer{c.dst, &buf})
				for i, r := range res {
					if r.Written != wantN || r.Err != nil {
						t.Errorf("FanOut[%d] = %+v; io.Copy = %d, nil", i, r, wantN)
					}
				}
			})
		}
	}
}

// adv32FifoOpensBlocked counts the threads of this process blocked in a
// fifo's open(2), waiting for its peer (the kernel's wait_for_partner,
// as /proc's wchan names it).
func adv32FifoOpensBlocked(t *testing.T) int {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/wchan")
	if err != nil || len(tasks) == 0 {
		t.Skipf("no /proc/self/task: %v", err)
	}
	n := 0
	for _, p := range tasks {
		if b, err := os.ReadFile(p); err == nil && string(b) == "wait_for_partner" {
			n++
		}
	}
	return n
}

// TestAdv32fAsyncWriterWaitsForRealReader: OpenFifo(os.O_WRONLY) on a
// fifo with no reader is a reader itself for the length of its open,
// and that wakes a writer blocked in AsyncOpenFifo(os.O_WRONLY), whose
// open then returned a writer with no reader: its first Write failed
// with EPIPE although AsyncOpenFifo promises a reader. It must go on
// waiting, and complete once a reader really has the fifo open.
func TestAdv32fAsyncWriterWaitsForRealReader(t *testing.T) {
	fdtest.Check(t)
	path := filepath.Join(t.TempDir(), "fifo")
	base := adv32FifoOpensBlocked(t)
	ch, err := AsyncOpenFifo(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	var res OpenFifoResult
	got := false
	// blocked waits until the async open waits in open(2) again, or has
	// completed (got).
	blocked := func() {
		fdtest.Within(t, 10*time.Second, func() {
			for !got && adv32FifoOpensBlocked(t) <= base {
				select {
				case res = <-ch:
					got = true
				case <-time.After(time.Millisecond):
				}
			}
		})
	}
	blocked()
	if got {
		t.Fatalf("AsyncOpenFifo(O_WRONLY) completed with no reader: %+v", res)
	}
	_, w, err := OpenFifo(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	blocked()
	if got {
		if res.W != nil {
			_, err := res.W.Write([]byte("x"))
			res.W.Close()
			t.Fatalf("AsyncOpenFifo(O_WRONLY) completed with the reader OpenFifo(O_WRONLY) was for its open only: Write: %v (EPIPE: %v)", err, errors.Is(err, syscall.EPIPE))
		}
		t.Fatalf("AsyncOpenFifo(O_WRONLY) completed early: %+v", res)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fdtest.Within(t, 10*time.Second, func() { res = <-ch })
	if res.Err != nil || res.W == nil {
		t.Fatalf("AsyncOpenFifo: %+v", res)
	}
	defer res.W.Close()
	if n, err := res.W.Write([]byte("x")); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	b := make([]byte, 2)
	if n, err := r.Read(b); n != 1 || err != nil || b[0] != 'x' {
		t.Fatalf("Read = %d, %v (%q)", n, err, b[:n])
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

// TestAdv32fCopierNilEnds: a nil reader or writer fails NewCopier and
// Add with an error matching os.ErrInvalid, as a nil *os.File's methods
// fail, and as a *PipeReader or *PipeWriter with no file did already;
// a nil one failed with an error that matched nothing.
func TestAdv32fCopierNilEnds(t *testing.T) {
	fdtest.Check(t)
	src, w, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	defer w.Close()
	outR, out, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	defer out.Close()
	cases := []struct {
		name string
		err  func() error
	}{
		{"nil reader", func() error { _, err := NewCopier(context.Background(), nil); return err }},
		{"reader without a file", func() error { _, err := NewCopier(context.Background(), &PipeReader{}); return err }},
		{"nil writer", func() error { _, err := NewCopier(context.Background(), src, out, nil); return err }},
		{"writer without a file", func() error { _, err := NewCopier(context.Background(), src, &PipeWriter{}); return err }},
	}
	for _, c := range cases {
		if err := c.err(); !errors.Is(err, os.ErrInvalid) {
			t.Errorf("NewCopier with a %s: %v; want an error matching os.ErrInvalid", c.name, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp, err := NewCopier(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []*PipeWriter{nil, {}} {
		if err := cp.Add(pw); !errors.Is(err, os.ErrInvalid) {
			t.Errorf("Add(%#v): %v; want an error matching os.ErrInvalid", pw, err)
		}
	}
	cancel()
	if err := cp.Wait(); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait = %v", err)
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
