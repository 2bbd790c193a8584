//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// adv10Src is a source of known bytes; rest, called once the copy has
// returned, reads what the copy left of it (to EOF).
type adv10Src struct {
	name string
	make func(t *testing.T, data []byte) (r io.Reader, rest func() []byte)
}

func adv10Sources() []adv10Src {
	sock := func(a, b net.Conn, data []byte) (io.Reader, func() []byte) {
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			b.Write(data)
			b.Close()
		}()
		return a, func() []byte {
			rest, _ := io.ReadAll(a)
			<-wrote
			return rest
		}
	}
	return []adv10Src{
		{"file", func(t *testing.T, data []byte) (io.Reader, func() []byte) {
			f := fdtest.TempFile(t, data)
			return f, func() []byte { b, _ := io.ReadAll(f); return b }
		}},
		{"tcp", func(t *testing.T, data []byte) (io.Reader, func() []byte) {
			a, b := tcpPair(t)
			t.Cleanup(func() { a.Close() })
			return sock(a, b, data)
		}},
		{"unix", func(t *testing.T, data []byte) (io.Reader, func() []byte) {
			a, b := unixPair(t)
			t.Cleanup(func() { a.Close() })
			return sock(a, b, data)
		}},
		{"pipe", func(t *testing.T, data []byte) (io.Reader, func() []byte) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				w.Write(data)
				w.Close()
			}()
			return r, func() []byte {
				rest, _ := io.ReadAll(r)
				<-wrote
				return rest
			}
		}},
		{"reader", func(t *testing.T, data []byte) (io.Reader, func() []byte) {
			r := bytes.NewReader(data)
			return r, func() []byte { b, _ := io.ReadAll(r); return b }
		}},
	}
}

// adv10Dst is a destination whose reader takes keep bytes and then goes
// away (a reset, a closed pipe, a failing Write): the copy fails midway.
type adv10Dst struct {
	name string
	make func(t *testing.T, keep int) io.Writer
}

type adv10FailWriter struct {
	mu   sync.Mutex
	left int
}

func (w *adv10FailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(p) <= w.left {
		w.left -= len(p)
		return len(p), nil
	}
	n := w.left
	w.left = 0
	return n, errors.New("adv10: writer full")
}

func adv10Dests() []adv10Dst {
	readThenClose := func(t *testing.T, r io.ReadCloser, keep int, before func()) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			io.CopyN(io.Discard, r, int64(keep))
			if before != nil {
				before()
			}
			r.Close()
		}()
		t.Cleanup(func() { r.Close(); <-done })
	}
	return []adv10Dst{
		{"tcp", func(t *testing.T, keep int) io.Writer {
			c, d := tcpPair(t)
			smallBuffers(t, 64<<10, c, d)
			t.Cleanup(func() { c.Close() })
			readThenClose(t, d, keep, func() { d.SetLinger(0) })
			return c
		}},
		{"unix", func(t *testing.T, keep int) io.Writer {
			c, d := unixPair(t)
			t.Cleanup(func() { c.Close() })
			readThenClose(t, d, keep, nil)
			return c
		}},
		{"pipe", func(t *testing.T, keep int) io.Writer {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { w.Close() })
			readThenClose(t, r, keep, nil)
			return w
		}},
		{"writer", func(t *testing.T, keep int) io.Writer {
			return &adv10FailWriter{left: keep}
		}},
	}
}

// TestAdv10LimitedFailedCopy: a copy through an *io.LimitedReader whose
// destination fails midway lowers N by exactly the bytes it took from
// the source, as io.Copy does (limit - N is what the source lost), and
// reports no more written than it took.
func TestAdv10LimitedFailedCopy(t *testing.T) {
	fdtest.Check(t)
	const size, keep = 4 << 20, 1<<20 + 5
	data := fdtest.Random(size)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, sk := range adv10Sources() {
			for _, dk := range adv10Dests() {
				for _, limit := range []int64{3<<20 + 7, 1 << 40} {
					for _, mode := range []string{"Copy", "CopyAsync", "FanOut"} {
						name := fmt.Sprintf("%s/%s-%s/N=%d/%s", ec.name, sk.name, dk.name, limit, mode)
						t.Run(name, func(t *testing.T) {
							r, rest := sk.make(t, data)
							w := dk.make(t, keep)
							lr := &io.LimitedReader{R: r, N: limit}
							var n int64
							var err error
							switch mode {
							case "Copy":
								n, err = e.Copy(w, lr)
							case "CopyAsync":
								f := e.CopyAsync(context.Background(), w, lr)
								select {
								case <-f.Done():
								case <-time.After(time.Minute):
									t.Fatal("CopyAsync did not end in a minute")
								}
								n, err = f.Wait()
							case "FanOut":
								res := e.FanOut(context.Background(), lr, []io.Writer{w})
								n, err = res[0].Written, res[0].Err
							}
							left := rest()
							consumed := int64(size - len(left))
							if !bytes.Equal(left, data[consumed:]) {
								t.Fatalf("the source's rest is not its last %d bytes", len(left))
							}
							if err == nil {
								t.Errorf("copy = (%d, nil); want an error", n)
							}
							if limit-lr.N != consumed || n > consumed {
								t.Errorf("copy = (%d, %v): source lost %d bytes, N lowered by %d", n, err, consumed, limit-lr.N)
							}
						})
					}
				}
			}
		}
	}
}

// adv10Wraps are the ways a test wraps its source in an
// *io.LimitedReader: alone, inside a RateLimitedReader, or around one.
var adv10Wraps = []struct {
	name string
	wrap func(lr *io.LimitedReader) io.Reader
}{
	{"lr", func(lr *io.LimitedReader) io.Reader { return lr }},
	{"rate(lr)", func(lr *io.LimitedReader) io.Reader {
		return RateLimit(lr, NewLimiter(64<<20, 0))
	}},
	{"lr(rate)", func(lr *io.LimitedReader) io.Reader {
		lr.R = RateLimit(lr.R, NewLimiter(64<<20, 0))
		return lr
	}},
}

// TestAdv10LimitedCancelledCopy: a copy through an *io.LimitedReader
// (paced or not) cancelled while its destination stalls lowers N by
// exactly the bytes it took from the source.
func TestAdv10LimitedCancelledCopy(t *testing.T) {
	fdtest.Check(t)
	const size, keep = 4 << 20, 256 << 10
	data := fdtest.Random(size)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, sk := range adv10Sources() {
			for _, dk := range adv10Stalls() {
				for _, wr := range adv10Wraps {
					for _, mode := range []string{"CopyAsync", "FanOut"} {
						name := fmt.Sprintf("%s/%s-%s/%s/%s", ec.name, sk.name, dk.name, wr.name, mode)
						t.Run(name, func(t *testing.T) {
							const limit = 3<<20 + 7
							r, rest := sk.make(t, data)
							w, got, release := dk.make(t, keep)
							lr := &io.LimitedReader{R: r, N: limit}
							src := wr.wrap(lr)
							if wr.name == "lr(rate)" {
								defer func() { lr.R = r }() // for rest
							}
							ctx, cancel := context.WithCancel(context.Background())
							defer cancel()
							type res struct {
								n   int64
								err error
							}
							done := make(chan res, 1)
							go func() {
								switch mode {
								case "CopyAsync":
									n, err := e.CopyAsync(ctx, w, src).Wait()
									done <- res{n, err}
								case "FanOut":
									rs := e.FanOut(ctx, src, []io.Writer{w})
									done <- res{rs[0].Written, rs[0].Err}
								}
							}()
							// Wait for the reader to have its keep bytes.
							for got() < keep {
								select {
								case r := <-done:
									t.Fatalf("copy ended before it stalled: (%d, %v)", r.n, r.err)
								case <-time.After(time.Millisecond):
								}
							}
							cancel()
							var rr res
							select {
							case rr = <-done:
							case <-time.After(time.Minute):
								t.Fatal("copy did not end in a minute after cancel")
							}
							release()
							if wr.name == "lr(rate)" {
								lr.R = r
							}
							left := rest()
							consumed := int64(size - len(left))
							if !bytes.Equal(left, data[consumed:]) {
								t.Fatalf("the source's rest is not its last %d bytes", len(left))
							}
							if !errors.Is(rr.err, context.Canceled) {
								t.Errorf("copy = (%d, %v); want context.Canceled", rr.n, rr.err)
							}
							if limit-lr.N != consumed || rr.n > consumed {
								t.Errorf("copy = (%d, %v): source lost %d bytes, N lowered by %d", rr.n, rr.err, consumed, limit-lr.N)
							}
						})
					}
				}
			}
		}
	}
}

// adv10Stall is a destination whose reader takes keep bytes and then
// stops reading until release, which closes its end and waits for it.
type adv10Stall struct {
	name string
	make func(t *testing.T, keep int) (w io.Writer, got func() int, release func())
}

func adv10Stalls() []adv10Stall {
	reader := func(t *testing.T, r io.ReadCloser, keep int) (func() int, func()) {
		var mu sync.Mutex
		n := 0
		gate := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 32<<10)
			for {
				mu.Lock()
				k := n
				mu.Unlock()
				if k >= keep {
					break
				}
				m, err := r.Read(buf[:min(len(buf), keep-k)])
				mu.Lock()
				n += m
				mu.Unlock()
				if err != nil {
					return
				}
			}
			<-gate
			io.Copy(io.Discard, r)
		}()
		var once sync.Once
		release := func() { once.Do(func() { close(gate); r.Close(); <-done }) }
		t.Cleanup(release)
		return func() int { mu.Lock(); defer mu.Unlock(); return n }, release
	}
	return []adv10Stall{
		{"tcp", func(t *testing.T, keep int) (io.Writer, func() int, func()) {
			c, d := tcpPair(t)
			smallBuffers(t, 64<<10, c, d)
			t.Cleanup(func() { c.Close() })
			got, release := reader(t, d, keep)
			return c, got, release
		}},
		{"pipe", func(t *testing.T, keep int) (io.Writer, func() int, func()) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { w.Close() })
			got, release := reader(t, r, keep)
			return w, got, release
		}},
	}
}

// TestAdv10ReadFromLimitedUndelivered: PipeWriter.ReadFrom from an
// *io.LimitedReader of a TCP connection, whose round through the
// userspace buffer past the urgent mark fails with bytes read and not
// delivered (the pipe's reader closed), lowers N by every byte it took
// from the connection, as io.Copy does, not by the bytes written only.
func TestAdv10ReadFromLimitedUndelivered(t *testing.T) {
	fdtest.Check(t)
	a, b := tcpPair(t)
	defer a.Close()
	defer b.Close()
	pr, pw, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	const limit = 1 << 30
	lr := &io.LimitedReader{R: a, N: limit}
	type res struct {
		n   int64
		err error
	}
	done := make(chan res, 1)
	go func() {
		n, err := pw.ReadFrom(lr)
		done <- res{n, err}
	}()
	// 15 segments, each spliced into a slot of its own, then the
	// urgent mark, where a round through the userspace buffer reads
	// more than the pipe's last slot takes.
	sent := 0
	for range 15 {
		if _, err := b.Write(bytes.Repeat([]byte("x"), 100)); err != nil {
			t.Fatal(err)
		}
		sent += 100
		time.Sleep(5 * time.Millisecond)
	}
	fdtest.SendOOB(t, b)
	time.Sleep(20 * time.Millisecond)
	if _, err := b.Write(bytes.Repeat([]byte("y"), 128<<10)); err != nil {
		t.Fatal(err)
	}
	sent += 128 << 10
	b.CloseWrite()
	time.Sleep(100 * time.Millisecond) // the copy meets the full pipe
	pr.Close()
	var r res
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		a.Close()
		<-done
		t.Fatal("ReadFrom did not end once the pipe's reader closed")
	}
	rest, err := io.ReadAll(a)
	if err != nil {
		t.Fatal(err)
	}
	consumed := int64(sent - len(rest))
	if !errors.Is(r.err, syscall.EPIPE) || reportedLost(r.err) == 0 {
		t.Fatalf("ReadFrom = (%d, %v); want EPIPE with bytes not delivered", r.n, r.err)
	}
	if limit-lr.N != consumed {
		t.Errorf("ReadFrom = (%d, %v): the connection lost %d bytes, N lowered by %d", r.n, r.err, consumed, limit-lr.N)
	}
}

// TestAdv9LimitedReaderCountsUndelivered: a copy through an
// *io.LimitedReader that fails with bytes read from a socket source and
// not delivered (the destination's peer reset while they sat in the
// intermediate pipe) must lower N by every byte it read, delivered or
// not, as io.Copy does: N left higher would let the caller's next read
// take bytes past its limit.
func TestAdv9LimitedReaderCountsUndelivered(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		t.Run(ec.name, func(t *testing.T) {
			e := newTestEngine(t, ec.opts...)
			a, b := tcpPair(t)
			c, d := tcpPair(t)
			defer func() { a.Close(); b.Close(); c.Close(); d.Close() }()
			smallBuffers(t, 16<<10, c, d)
			const sent, limit = 4 << 20, 1 << 30
			wrote := make(chan error, 1)
			go func() {
				_, err := a.Write(fdtest.Random(sent))
				a.CloseWrite()
				wrote <- err
			}()
			lr := &io.LimitedReader{R: b, N: limit}
			fut := e.CopyAsync(context.Background(), c, lr)
			for fut.Written() == 0 {
				select {
				case <-fut.Done():
					t.Fatal("the copy ended before its destination filled")
				case <-time.After(time.Millisecond):
				}
			}
			d.SetLinger(0)
			d.Close() // a reset: the bytes in the copy's pipe cannot be delivered
			var n int64
			var err error
			select {
			case <-fut.Done():
				n, err = fut.Wait()
			case <-time.After(10 * time.Second):
				t.Fatal("the copy did not end after its destination's peer reset")
			}
			lost := reportedLost(err)
			if err == nil || lost == 0 {
				t.Fatalf("Copy = (%d, %v); want an error reporting undelivered bytes", n, err)
			}
			rest, rerr := io.Copy(io.Discard, b)
			if werr := <-wrote; werr != nil || rerr != nil {
				t.Fatalf("source: write %v, read %v", werr, rerr)
			}
			consumed := sent - rest
			if n+int64(lost) != consumed || lr.N != limit-consumed {
				t.Errorf("copy read %d bytes of its source (wrote %d, %d undelivered); N = %d, want %d", consumed, n, lost, lr.N, limit-consumed)
			}
		})
	}
}

// TestReview15FanOutPanicLimitedReader: a FanOut of an *io.LimitedReader
// whose destination's Write panics leaves N decreased by the bytes read
// from the source, as a recovered io.Copy leaves it (LimitedReader.Read
// lowers N as it reads), on the kernel path as on the userspace one: N
// and the file's offset agree on how much of the limit is left. The
// kernel path moved the offset and left N as it was.
func TestReview15FanOutPanicLimitedReader(t *testing.T) {
	fdtest.Check(t)
	const size = 4 << 20
	for _, tc := range []struct {
		name string
		src  func(t *testing.T) (io.Reader, func() int64) // the source, and the bytes read from it
	}{
		{"kernel", func(t *testing.T) (io.Reader, func() int64) {
			f := fdtest.TempFile(t, fdtest.Random(size))
			return f, func() int64 {
				off, err := f.Seek(0, io.SeekCurrent)
				if err != nil {
					t.Fatal(err)
				}
				return off
			}
		}},
		{"userspace", func(t *testing.T) (io.Reader, func() int64) {
			r := &countingReader{r: &panicEnd{readOK: size, writeOK: -1}}
			return r, func() int64 { return r.n }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := NewEngine()
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			src, read := tc.src(t)
			lr := &io.LimitedReader{R: src, N: size}
			bad := &panicEnd{val: "boom", writeOK: 64 << 10}
			func() {
				defer func() {
					if p := recover(); p != "boom" {
						t.Fatalf("recovered %v, want the Write's panic", p)
					}
				}()
				e.FanOut(context.Background(), lr, []io.Writer{drainedPipe(t), bad})
			}()
			n := read()
			if n == 0 {
				t.Fatal("nothing was read from the source before the panic")
			}
			if lr.N != size-n {
				t.Errorf("LimitedReader.N = %d after %d bytes were read; want %d", lr.N, n, size-n)
			}
		})
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}
