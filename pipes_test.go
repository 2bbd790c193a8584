package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// The tests of the top-level contract (Copy, CopyAsync, CopyContext) on
// values every operating system has: readers and writers with no
// descriptor, bytes.Buffer and strings.Reader (io.WriterTo,
// io.ReaderFrom) and net.Pipe (deadlines, no descriptor). The same
// contract on every kind of descriptor, which needs Linux, is tested in
// pipes_linux_test.go.

// engineCase is an engine configuration the tests run on.
type engineCase struct {
	name string
	opts []Option
}

// engineCases returns the engines to test under the current
// PIPES_BACKEND: the default one and, on io_uring, one that sends every
// CopyAsync from a regular file through the ring.
func engineCases(t *testing.T) []engineCase {
	cases := []engineCase{{"default", nil}}
	e, err := NewEngine()
	if err != nil {
		t.Fatalf("NewEngine: %v", err)
	}
	defer e.Close()
	if e.Backend() == BackendIOUring {
		cases = append(cases, engineCase{"ring", []Option{WithRingMinConcurrency(0)}})
	}
	return cases
}

// newTestEngine returns an engine closed at the end of the test.
func newTestEngine(t testing.TB, opts ...Option) *Engine {
	t.Helper()
	e, err := NewEngine(opts...)
	if err != nil {
		t.Fatalf("NewEngine: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

// closeWithin closes e and fails the test if Close has not returned
// within d (it waits for every copy in flight: one still counted would
// hang it).
func closeWithin(t *testing.T, e *Engine, d time.Duration) {
	t.Helper()
	closed := make(chan error, 1)
	go func() { closed <- e.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(d):
		t.Fatalf("Close still waiting after %v: a call is still counted in flight", d)
	}
}

// runCopy copies with e.Copy, or with e.CopyAsync and Wait (twice: the
// second Wait must give the same result).
func runCopy(e *Engine, async bool, dst io.Writer, src io.Reader) (int64, error) {
	if !async {
		return e.Copy(dst, src)
	}
	f := e.CopyAsync(context.Background(), dst, src)
	select {
	case <-f.Done():
	case <-time.After(2 * time.Minute):
		return 0, errors.New("CopyAsync did not finish in 2 minutes")
	}
	n, err := f.Wait()
	if n2, err2 := f.Wait(); n2 != n || err2 != err {
		return 0, fmt.Errorf("second Wait gave (%d, %v), first (%d, %v)", n2, err2, n, err)
	}
	return n, err
}

// waitFuture waits for f, failing the test if the copy does not end.
func waitFuture(t *testing.T, f *Future) (int64, error) {
	t.Helper()
	select {
	case <-f.Done():
		return f.Wait()
	case <-time.After(30 * time.Second):
		t.Fatal("the copy did not end")
		return 0, nil
	}
}

// contractModes are the three ways to run a copy, on an engine or on the
// default one (e == nil).
var contractModes = []struct {
	name string
	run  func(e *Engine, dst io.Writer, src io.Reader) (int64, error)
}{
	{"Copy", func(e *Engine, dst io.Writer, src io.Reader) (int64, error) {
		if e == nil {
			return Copy(dst, src)
		}
		return e.Copy(dst, src)
	}},
	{"CopyAsync", func(e *Engine, dst io.Writer, src io.Reader) (int64, error) {
		if e == nil {
			return CopyAsync(context.Background(), dst, src).Wait()
		}
		return runCopy(e, true, dst, src)
	}},
	{"CopyContext", func(e *Engine, dst io.Writer, src io.Reader) (int64, error) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if e == nil {
			return CopyContext(ctx, dst, src)
		}
		return e.CopyContext(ctx, dst, src)
	}},
}

// valueSource is a source with no descriptor: its reader, and a function
// that returns what the copy left unread once it is done.
type valueSource struct {
	name string
	make func(t *testing.T, data []byte) (r io.Reader, rest func() []byte)
}

// valueSink is a destination with no descriptor: its writer, and a
// function that returns what reached it once the copy is done.
type valueSink struct {
	name string
	make func(t *testing.T) (w io.Writer, got func() []byte)
}

var valueSources = []valueSource{
	{"reader", func(t *testing.T, data []byte) (io.Reader, func() []byte) {
		r := bytes.NewReader(data)
		return struct{ io.Reader }{r}, func() []byte { b, _ := io.ReadAll(r); return b }
	}},
	{"strings.Reader", func(t *testing.T, data []byte) (io.Reader, func() []byte) {
		r := strings.NewReader(string(data))
		return r, func() []byte { b, _ := io.ReadAll(r); return b }
	}},
	{"bytes.Buffer", func(t *testing.T, data []byte) (io.Reader, func() []byte) {
		b := bytes.NewBuffer(bytes.Clone(data))
		return b, func() []byte { return b.Bytes() }
	}},
	{"net.Pipe", func(t *testing.T, data []byte) (io.Reader, func() []byte) {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		go func() { b.Write(data); b.Close() }()
		return a, func() []byte { b, _ := io.ReadAll(a); return b }
	}},
}

var valueSinks = []valueSink{
	{"writer", func(t *testing.T) (io.Writer, func() []byte) {
		var b bytes.Buffer
		return struct{ io.Writer }{&b}, b.Bytes
	}},
	{"bytes.Buffer", func(t *testing.T) (io.Writer, func() []byte) {
		var b bytes.Buffer
		return &b, b.Bytes
	}},
	{"net.Pipe", func(t *testing.T) (io.Writer, func() []byte) {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		done := make(chan []byte, 1)
		go func() { all, _ := io.ReadAll(b); done <- all }()
		return a, func() []byte { a.Close(); return <-done }
	}},
}

// TestCopyValues copies every size between every pair of value kinds,
// with Copy, CopyAsync and CopyContext on each engine and on the default
// one, and checks the bytes and the count.
func TestCopyValues(t *testing.T) {
	DefaultEngine() // lives for the whole process: not a leak of this test
	fdtest.Check(t)
	sizes := []int{0, 1, 32<<10 + 1, 256<<10 + 3}
	if testing.Short() {
		sizes = []int{0, 32<<10 + 1}
	}
	engines := []struct {
		name string
		e    *Engine
	}{{"DefaultEngine", nil}}
	for _, ec := range engineCases(t) {
		engines = append(engines, struct {
			name string
			e    *Engine
		}{ec.name, newTestEngine(t, ec.opts...)})
	}
	for _, eng := range engines {
		for _, sk := range valueSources {
			for _, dk := range valueSinks {
				for _, mode := range contractModes {
					for _, size := range sizes {
						t.Run(fmt.Sprintf("%s/%s->%s/%s/%d", eng.name, sk.name, dk.name, mode.name, size), func(t *testing.T) {
							data := fdtest.Random(size)
							src, _ := sk.make(t, data)
							dst, got := dk.make(t)
							n, err := mode.run(eng.e, dst, src)
							if err != nil || n != int64(size) {
								t.Fatalf("copy = (%d, %v), want (%d, nil)", n, err, size)
							}
							if b := got(); !bytes.Equal(b, data) {
								t.Fatalf("destination got %d bytes, not the %d of the source", len(b), size)
							}
						})
					}
				}
			}
		}
	}
}

// TestCopyLimitedReaderValues checks that a *io.LimitedReader over a
// value bounds the copy, has N decreased, and leaves the rest of the
// source unread; N <= 0 copies nothing.
func TestCopyLimitedReaderValues(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	for _, sk := range valueSources {
		for _, mode := range contractModes {
			for _, limit := range []int64{-1, 0, 1, 100<<10 + 3} {
				t.Run(fmt.Sprintf("%s/%s/N=%d", sk.name, mode.name, limit), func(t *testing.T) {
					data := fdtest.Random(300 << 10)
					src, rest := sk.make(t, data)
					var dst bytes.Buffer
					lr := &io.LimitedReader{R: src, N: limit}
					n, err := mode.run(e, &dst, lr)
					want := max(limit, 0)
					if err != nil || n != want || lr.N != min(limit, 0) {
						t.Fatalf("copy = (%d, %v), N = %d; want (%d, nil), N = %d", n, err, lr.N, want, min(limit, 0))
					}
					if !bytes.Equal(dst.Bytes(), data[:want]) {
						t.Fatalf("destination got %d bytes, want the first %d", dst.Len(), want)
					}
					if r := rest(); !bytes.Equal(r, data[want:]) {
						t.Fatalf("the source's remaining %d bytes differ from the %d not copied", len(r), len(data)-int(want))
					}
				})
			}
		}
	}
}

// TestCopyContextCancelValues cancels a CopyContext or CopyAsync whose
// source, a net.Pipe, is idle after a first message: the copy returns
// the bytes delivered and an error matching both context.Canceled and
// the cancel's cause, and both ends are usable afterwards (the deadlines
// set to wake the copy are cleared). A context cancelled before the copy
// copies nothing; a cancel after the copy changes nothing.
func TestCopyContextCancelValues(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	start := map[string]func(ctx context.Context, dst io.Writer, src io.Reader) func() (int64, error){
		"CopyContext": func(ctx context.Context, dst io.Writer, src io.Reader) func() (int64, error) {
			type result struct {
				n   int64
				err error
			}
			done := make(chan result, 1)
			go func() { n, err := e.CopyContext(ctx, dst, src); done <- result{n, err} }()
			return func() (int64, error) { r := <-done; return r.n, r.err }
		},
		"CopyAsync": func(ctx context.Context, dst io.Writer, src io.Reader) func() (int64, error) {
			f := e.CopyAsync(ctx, dst, src)
			return func() (int64, error) { return waitFuture(t, f) }
		},
	}
	for _, name := range []string{"CopyContext", "CopyAsync"} {
		t.Run(name+"/idle-source", func(t *testing.T) {
			src, feed := net.Pipe()
			dst, sink := net.Pipe()
			defer func() { src.Close(); feed.Close(); dst.Close(); sink.Close() }()
			cause := errors.New("client went away")
			ctx, cancel := context.WithCancelCause(context.Background())
			wait := start[name](ctx, dst, src)
			go feed.Write([]byte("hello"))
			got := make([]byte, 5)
			if _, err := io.ReadFull(sink, got); err != nil || string(got) != "hello" {
				t.Fatalf("destination read %q, %v", got, err)
			}
			cancel(cause)
			n, err := wait()
			if n != 5 || !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
				t.Fatalf("copy = (%d, %v), want (5, an error matching context.Canceled and the cause)", n, err)
			}
			go feed.Write([]byte("again"))
			if _, err := io.ReadFull(src, got); err != nil || string(got) != "again" {
				t.Fatalf("reading the source after a cancelled copy: %q, %v", got, err)
			}
			go sink.Read(got)
			if _, err := dst.Write([]byte("x")); err != nil {
				t.Fatalf("writing to the destination after a cancelled copy: %v", err)
			}
		})
		t.Run(name+"/before", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var dst bytes.Buffer
			n, err := start[name](ctx, &dst, strings.NewReader("abc"))()
			if n != 0 || dst.Len() != 0 || !errors.Is(err, context.Canceled) {
				t.Fatalf("copy = (%d, %v), %d bytes delivered; want (0, context.Canceled)", n, err, dst.Len())
			}
		})
		t.Run(name+"/after", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			var dst bytes.Buffer
			n, err := start[name](ctx, &dst, strings.NewReader("abc"))()
			cancel()
			if n != 3 || err != nil || dst.String() != "abc" {
				t.Fatalf("copy = (%d, %v), %q delivered; want (3, nil), \"abc\"", n, err, dst.String())
			}
		})
	}
}

// TestCopyAfterClose: every copy method of a closed engine fails with
// ErrClosed and moves nothing.
func TestCopyAfterClose(t *testing.T) {
	fdtest.Check(t)
	e, err := NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for _, mode := range contractModes {
		t.Run(mode.name, func(t *testing.T) {
			var dst bytes.Buffer
			n, err := mode.run(e, &dst, strings.NewReader("x"))
			if n != 0 || dst.Len() != 0 || !errors.Is(err, ErrClosed) {
				t.Fatalf("copy = (%d, %v), %d bytes delivered; want (0, ErrClosed)", n, err, dst.Len())
			}
		})
	}
}

// TestNewEngineNilOption: a nil Option is ignored, as a nil FanOutOption
// or RelayOption is (an option chosen by a condition, left nil where it
// does not apply), and never panics NewEngine: the options around it
// still apply.
func TestNewEngineNilOption(t *testing.T) {
	fdtest.Check(t)
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"nil", []Option{nil}},
		{"nil first", []Option{nil, WithMaxPipes(3)}},
		{"nil last", []Option{WithMaxPipes(3), nil}},
		{"nils around", []Option{nil, WithPipeSize(64 << 10), nil, WithMaxPipes(3), nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e *Engine
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("NewEngine panicked: %v", p)
					}
				}()
				e, err = NewEngine(tc.opts...)
			}()
			if err != nil {
				t.Fatalf("NewEngine: %v", err)
			}
			defer e.Close()
			if len(tc.opts) > 1 && e.cfg.maxPipes != 3 {
				t.Errorf("WithMaxPipes(3) beside a nil Option: maxPipes %d", e.cfg.maxPipes)
			}
			var dst bytes.Buffer
			if n, err := e.Copy(&dst, strings.NewReader("abc")); n != 3 || err != nil || dst.String() != "abc" {
				t.Errorf("Copy = (%d, %v), %q delivered; want (3, nil), \"abc\"", n, err, dst.String())
			}
		})
	}
}

// TestWithBackendUserspace: BackendUserspace is accepted where it is
// what every engine runs (off Linux, or the pipes_portable build), and
// refused on Linux with an error wrapping errors.ErrUnsupported, not as
// an unknown backend; BackendSplice gives a userspace engine there; a
// value that names no backend is refused.
func TestWithBackendUserspace(t *testing.T) {
	fdtest.Check(t)
	e, err := NewEngine(WithBackend(BackendUserspace))
	if kernelBuild {
		if !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("WithBackend(BackendUserspace) on Linux: %v, want errors.ErrUnsupported", err)
		}
	} else if err != nil || e.Backend() != BackendUserspace {
		t.Errorf("WithBackend(BackendUserspace) without kernel paths: %v", err)
	}
	if e != nil {
		e.Close()
	}
	want := BackendSplice
	if !kernelBuild {
		want = BackendUserspace // no splice(2) to use
	}
	if e, err := NewEngine(WithBackend(BackendSplice)); err != nil || e.Backend() != want {
		t.Errorf("WithBackend(BackendSplice): %v, want an engine on %s", err, want)
	} else {
		e.Close()
	}
	if e, err := NewEngine(WithBackend("uring")); err == nil || errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("WithBackend(\"uring\"): %v, want an unknown backend", err)
		if e != nil {
			e.Close()
		}
	}
}

// TestByteCount: Stats.Bytes is the sum of every stripe the copies added
// to, however many copies picked each one.
func TestByteCount(t *testing.T) {
	for _, copies := range []int{0, 1, byteStripes - 1, byteStripes, 3*byteStripes + 5} {
		var b byteCount
		var want uint64
		for i := range copies {
			s := b.stripe()
			s.Add(uint64(i + 1))
			want += uint64(i + 1)
		}
		b.Add(7)
		want += 7
		if got := b.Load(); got != want {
			t.Errorf("%d copies: Load() = %d, want %d", copies, got, want)
		}
	}
}
