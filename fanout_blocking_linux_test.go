//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// blockingPipe returns the two ends of a pipe in blocking mode, as
// *os.Files the netpoller does not watch (os.NewFile of descriptors
// without O_NONBLOCK), both closed when the test ends.
func blockingPipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r = os.NewFile(uintptr(p[0]), "pipe (blocking, read end)")
	w = os.NewFile(uintptr(p[1]), "pipe (blocking, write end)")
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// quietBlockingSource returns a source in blocking mode of kind "pty" (a
// pty master), "pipe", "unix" or "tcp" that yields hello and then
// nothing, and end, which makes it end (EOF, or EIO for the pty).
func quietBlockingSource(t *testing.T, kind string, hello []byte) (src io.Reader, end func()) {
	t.Helper()
	var w io.WriteCloser
	switch kind {
	case "pty":
		src, w = blockingPty(t)
	case "pipe":
		src, w = blockingPipe(t)
	case "unix", "tcp":
		src, w = blockingSocket(t, kind, 0)
	default:
		t.Fatalf("unknown source kind %q", kind)
	}
	if _, err := w.Write(hello); err != nil {
		t.Fatal(err)
	}
	return src, func() { w.Close() }
}

// signalBuffer is a destination without a descriptor that tells (full)
// when it holds at least want bytes; safe for concurrent use.
type signalBuffer struct {
	mu   sync.Mutex
	b    bytes.Buffer
	want int
	full chan struct{}
}

func newSignalBuffer(want int) *signalBuffer {
	return &signalBuffer{want: want, full: make(chan struct{})}
}

func (s *signalBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	had := s.b.Len()
	s.b.Write(p)
	if had < s.want && s.b.Len() >= s.want {
		close(s.full)
	}
	return len(p), nil
}

func (s *signalBuffer) bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// TestAdv3FanOutBlockingSource: FanOut reads a source in blocking mode
// (a pty master as f.Fd() or term.MakeRaw leaves it, an os.NewFile of a
// blocking pipe or socket) through userspace, and such a Read waits in
// the kernel, where no deadline reaches it. A fan-out from one that has
// gone quiet must end once cancelled or its engine closed (Close must
// return), every destination with an error wrapping context.Canceled or
// ErrClosed and the bytes it received, as a Copy from the same source
// ends.
func TestAdv3FanOutBlockingSource(t *testing.T) {
	fdtest.Check(t)
	hello := []byte("hello, quiet source")
	for _, ec := range engineCases(t) {
		for _, kind := range []string{"pty", "pipe", "unix", "tcp", "limited-pty"} {
			for _, how := range []string{"cancel", "Close"} {
				t.Run(fmt.Sprintf("%s/%s/%s", ec.name, kind, how), func(t *testing.T) {
					e := newCaseEngine(t, ec)
					const limit = 1000
					src, end := quietBlockingSource(t, strings.TrimPrefix(kind, "limited-"), hello)
					lr := &io.LimitedReader{R: src, N: limit}
					if kind != strings.TrimPrefix(kind, "limited-") {
						src = lr
					}
					r, w := advConn(t, "pipe")
					defer r.Close()
					defer w.Close()
					buf := newSignalBuffer(len(hello))
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					res := make(chan []Result, 1)
					go func() { res <- e.FanOut(ctx, src, []io.Writer{w, buf}) }()
					got := make([]byte, len(hello))
					if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, hello) {
						t.Fatalf("the destination's peer read %q, %v; want %q", got, err, hello)
					}
					if _, ok := recvBy(buf.full, time.Now().Add(20*time.Second)); !ok {
						t.Fatalf("the buffer destination got %q for 20s, want %q", buf.bytes(), hello)
					}
					closed, want := stopCopy(e, how, cancel)
					rs, ok := recvBy(res, time.Now().Add(20*time.Second))
					if !ok {
						end()
						rs = <-res
						t.Fatalf("FanOut still ran 20s after the %s; once the source ended: %+v", how, rs)
					}
					if closed != nil {
						if c := <-closed; c.err != nil {
							t.Errorf("Close: %v", c.err)
						}
					}
					for i, res := range rs {
						if !errors.Is(res.Err, want) || res.Written != int64(len(hello)) {
							t.Errorf("destination %d: %+v, want (%d, an error wrapping %v)", i, res, len(hello), want)
						}
					}
					if !bytes.Equal(buf.bytes(), hello) {
						t.Errorf("the buffer destination got %q, want %q", buf.bytes(), hello)
					}
					if src == lr && lr.N != limit-int64(len(hello)) {
						t.Errorf("LimitedReader.N = %d after the fan-out, want %d", lr.N, limit-len(hello))
					}
				})
			}
		}
	}
}

// stalledBlockingDest returns a destination in blocking mode of kind
// "pipe", "unix" or "tcp" (an os.NewFile of a descriptor without
// O_NONBLOCK) whose peer reads nothing, and drain, which closes the
// destination and returns every byte its peer can then read.
func stalledBlockingDest(t *testing.T, kind string) (dst io.Writer, drain func() []byte) {
	t.Helper()
	var w io.Closer
	var peer io.Reader
	switch kind {
	case "pipe":
		r, f := blockingPipe(t)
		dst, w, peer = f, f, r
	case "unix", "tcp":
		f, p := blockingSocket(t, kind, 64<<10)
		dst, w, peer = f, f, p
	default:
		t.Fatalf("unknown destination kind %q", kind)
	}
	return dst, func() []byte {
		w.Close()
		b, err := io.ReadAll(peer)
		if err != nil {
			t.Errorf("draining the %s destination: %v", kind, err)
		}
		return b
	}
}

// TestAdv3FanOutBlockingDest: a destination in blocking mode (an
// os.NewFile of a blocking pipe or socket) whose peer reads nothing. Its
// Write waits in the kernel, where no deadline reaches it: an eviction,
// a cancel or Engine.Close stopped the fan-out's copy to it but FanOut
// (and Close) waited for that Write forever. FanOut must end: with
// FanOutEvictAfter the stalled destination is evicted and the healthy one
// gets every byte; a cancel or Close ends every destination with an error
// wrapping context.Canceled or ErrClosed. Each destination's Written is
// exactly what its peer can read. The source is a pipe (the kernel
// fan-out) or one hidden behind a wrapper (the userspace one).
func TestAdv3FanOutBlockingDest(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(4 << 20)
	for _, ec := range engineCases(t) {
		for _, path := range []string{"kernel", "userspace"} {
			for _, kind := range []string{"pipe", "unix", "tcp"} {
				for _, how := range []string{"evict", "cancel", "Close"} {
					t.Run(fmt.Sprintf("%s/%s/%s/%s", ec.name, path, kind, how), func(t *testing.T) {
						e := newCaseEngine(t, ec)
						sr, sw, err := os.Pipe()
						if err != nil {
							t.Fatal(err)
						}
						defer sr.Close()
						feedQuietly(t, sw, data)
						hr, hw := advConn(t, "pipe")
						defer hr.Close()
						defer hw.Close()
						healthy := make(chan []byte, 1)
						go func() {
							b, _ := io.ReadAll(hr)
							healthy <- b
						}()
						stalled, drain := stalledBlockingDest(t, kind)
						ctx, cancel := context.WithCancel(context.Background())
						defer cancel()
						var opts []FanOutOption
						if how == "evict" {
							opts = append(opts, FanOutEvictAfter(time.Second))
						}
						var src io.Reader = sr
						if path == "userspace" {
							src = struct{ io.Reader }{sr}
						}
						res := make(chan []Result, 1)
						go func() { res <- e.FanOut(ctx, src, []io.Writer{hw, stalled}, opts...) }()
						var closed <-chan closeResult
						want := []error{nil, ErrEvicted}
						if how != "evict" {
							time.Sleep(300 * time.Millisecond) // the stalled destination's Write waits
							var w error
							closed, w = stopCopy(e, how, cancel)
							want = []error{w, w}
						}
						rs, ok := recvBy(res, time.Now().Add(20*time.Second))
						if !ok {
							got := drain()
							rs = <-res
							t.Fatalf("FanOut still ran 20s on (after the %s); once the destination was drained (%d bytes): %+v", how, len(got), rs)
						}
						if closed != nil {
							if c := <-closed; c.err != nil {
								t.Errorf("Close: %v", c.err)
							}
						}
						hw.Close()
						got := [][]byte{<-healthy, drain()}
						for i, r := range rs {
							if want[i] == nil && r.Err != nil || !errors.Is(r.Err, want[i]) {
								t.Errorf("destination %d: error %v, want one wrapping %v", i, r.Err, want[i])
							}
							if r.Written != int64(len(got[i])) || !bytes.HasPrefix(data, got[i]) {
								t.Errorf("destination %d: Written %d, its peer read %d bytes (the data's first ones: %v)",
									i, r.Written, len(got[i]), bytes.HasPrefix(data, got[i]))
							}
						}
						if how == "evict" && (len(got[0]) != len(data) || !errors.Is(rs[1].Err, os.ErrDeadlineExceeded)) {
							t.Errorf("evicting: the healthy destination got %d of %d bytes; the stalled one's error %v", len(got[0]), len(data), rs[1].Err)
						}
					})
				}
			}
		}
	}
}

// TestAdv3BlockingWriter: FanOut's writer of a destination in blocking
// mode, with RWF_NOWAIT and as on a kernel whose pipes lack it (PIPE_BUF
// bytes at a time): every byte arrives in order while the peer reads
// slowly, and a write deadline in the past ends a write waiting for
// room with os.ErrDeadlineExceeded, having counted exactly the bytes
// the peer can read.
func TestAdv3BlockingWriter(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(1 << 20)
	for _, pages := range []bool{false, true} {
		t.Run(fmt.Sprintf("pages=%v", pages), func(t *testing.T) {
			r, w := blockingPipe(t)
			bw, ok := blockingDest(w).(*blockingWriter)
			if !ok {
				t.Fatalf("blockingDest(%v) is not a blockingWriter", w)
			}
			bw.pages = pages
			got := make(chan []byte, 1)
			go func() {
				var b bytes.Buffer
				buf := make([]byte, 3000)
				for {
					n, err := r.Read(buf)
					b.Write(buf[:n])
					if err != nil {
						got <- b.Bytes()
						return
					}
					runtime.Gosched()
				}
			}()
			if n, err := bw.Write(data); n != len(data) || err != nil {
				t.Fatalf("Write = (%d, %v), want (%d, nil)", n, err, len(data))
			}
			w.Close()
			if b := <-got; !bytes.Equal(b, data) {
				t.Fatalf("the reader got %d bytes, equal %v; want the %d written", len(b), bytes.Equal(b, data), len(data))
			}

			r, w = blockingPipe(t)
			bw = blockingDest(w).(*blockingWriter)
			bw.pages = pages
			type result struct {
				n   int
				err error
			}
			wrote := make(chan result, 1)
			go func() {
				n, err := bw.Write(data) // more than the pipe holds
				wrote <- result{n, err}
			}()
			time.Sleep(100 * time.Millisecond) // the Write waits for room
			bw.SetWriteDeadline(time.Unix(1, 0))
			res, ok := recvBy(wrote, time.Now().Add(20*time.Second))
			if !ok {
				go io.Copy(io.Discard, r)
				t.Fatal("a write deadline in the past did not end the Write in 20s")
			}
			w.Close()
			b, _ := io.ReadAll(r)
			if !errors.Is(res.err, os.ErrDeadlineExceeded) || res.n != len(b) || !bytes.HasPrefix(data, b) {
				t.Errorf("Write = (%d, %v), the reader got %d bytes (the data's first: %v); want (%d, os.ErrDeadlineExceeded)",
					res.n, res.err, len(b), bytes.HasPrefix(data, b), len(b))
			}
		})
	}
}

// TestAdv3CopyBlockingDest: a copy through userspace (a source without a
// descriptor) into a destination in blocking mode whose peer reads
// nothing. Its Write waited in the kernel, where neither a cancel nor
// Engine.Close reached it. The copy must end with an error wrapping
// context.Canceled or ErrClosed, having reported exactly the bytes the
// peer can then read.
func TestAdv3CopyBlockingDest(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(4 << 20)
	for _, ec := range engineCases(t) {
		for _, kind := range []string{"pipe", "unix", "tcp"} {
			for _, how := range []string{"cancel", "Close"} {
				t.Run(fmt.Sprintf("%s/%s/%s", ec.name, kind, how), func(t *testing.T) {
					e := newCaseEngine(t, ec)
					stalled, drain := stalledBlockingDest(t, kind)
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					src := struct{ io.Reader }{bytes.NewReader(data)}
					run := startCopy(e, ctx, true, stalled, src)
					time.Sleep(300 * time.Millisecond) // the copy's Write waits for room
					closed, want := stopCopy(e, how, cancel)
					if _, ok := recvBy(run.done, time.Now().Add(20*time.Second)); !ok {
						got := drain()
						<-run.done
						t.Fatalf("the copy still ran 20s after the %s; once the destination was drained (%d bytes): (%d, %v)", how, len(got), run.n, run.err)
					}
					if closed != nil {
						if c := <-closed; c.err != nil {
							t.Errorf("Close: %v", c.err)
						}
					}
					got := drain()
					if !errors.Is(run.err, want) || run.n != int64(len(got)) || !bytes.HasPrefix(data, got) {
						t.Errorf("copy = (%d, %v), want an error wrapping %v; the peer read %d bytes (the data's first ones: %v)",
							run.n, run.err, want, len(got), bytes.HasPrefix(data, got))
					}
				})
			}
		}
	}
}

// uncomparableReader is a reader of a type that == panics on (a slice
// field), as a value in an interface.
type uncomparableReader struct {
	r *bytes.Reader
	_ []byte
}

func (u uncomparableReader) Read(p []byte) (int, error) { return u.r.Read(p) }

// TestAdv3UncomparableSource: a source of an uncomparable type, read
// through userspace by Copy and FanOut, is copied whole: the check for a
// source in blocking mode must not compare interface values.
func TestAdv3UncomparableSource(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(256 << 10)
	for _, ec := range engineCases(t) {
		t.Run(ec.name, func(t *testing.T) {
			e := newCaseEngine(t, ec)
			var buf bytes.Buffer
			n, err := e.Copy(&buf, uncomparableReader{r: bytes.NewReader(data)})
			if n != int64(len(data)) || err != nil || !bytes.Equal(buf.Bytes(), data) {
				t.Errorf("Copy = (%d, %v), want (%d, nil) and the data", n, err, len(data))
			}
			var fb bytes.Buffer
			rs := e.FanOut(context.Background(), uncomparableReader{r: bytes.NewReader(data)}, []io.Writer{&fb})
			if rs[0].Written != int64(len(data)) || rs[0].Err != nil || !bytes.Equal(fb.Bytes(), data) {
				t.Errorf("FanOut = %+v, want %d bytes and no error", rs[0], len(data))
			}
		})
	}
}
