//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
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

// TestAdv10ReadFromFifoWaitsForWriter: PipeWriter.ReadFrom from a
// read-only fifo that has had no writer yet waits for one, as the
// fifo's Read and WriteTo do (and io.Copy through them), instead of
// taking the kernel's "no writer" EOF for the end: also through an
// *io.LimitedReader, which io.Copy hands to ReadFrom.
func TestAdv10ReadFromFifoWaitsForWriter(t *testing.T) {
	fdtest.Check(t)
	for _, tc := range []struct {
		name string
		copy func(w *PipeWriter, r *PipeReader) (int64, error)
	}{
		{"ReadFrom", func(w *PipeWriter, r *PipeReader) (int64, error) { return w.ReadFrom(r) }},
		{"ReadFrom(LimitedReader)", func(w *PipeWriter, r *PipeReader) (int64, error) {
			return w.ReadFrom(&io.LimitedReader{R: r, N: 1 << 20})
		}},
		{"io.Copy(LimitedReader)", func(w *PipeWriter, r *PipeReader) (int64, error) {
			return io.Copy(w, io.LimitReader(r, 1<<20))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := newFifo(t)
			fr, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer fr.Close()
			pr, pw, err := New()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			defer pw.Close()
			type res struct {
				n   int64
				err error
			}
			done := make(chan res, 1)
			go func() {
				n, err := tc.copy(pw, fr)
				done <- res{n, err}
			}()
			select {
			case r := <-done:
				t.Fatalf("copy = (%d, %v) before the fifo had a writer; want it to wait", r.n, r.err)
			case <-time.After(100 * time.Millisecond):
			}
			fw, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			hello := []byte("hello, fifo")
			if _, err := fw.Write(hello); err != nil {
				t.Fatal(err)
			}
			fw.Close()
			var r res
			select {
			case r = <-done:
			case <-time.After(10 * time.Second):
				fr.Close()
				<-done
				t.Fatal("copy did not end at the writer's EOF")
			}
			if r.err != nil || r.n != int64(len(hello)) {
				t.Fatalf("copy = (%d, %v); want (%d, nil)", r.n, r.err, len(hello))
			}
			got := make([]byte, len(hello))
			if _, err := io.ReadFull(pr, got); err != nil || !bytes.Equal(got, hello) {
				t.Fatalf("pipe holds %q, %v; want %q", got, err, hello)
			}
		})
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

// TestAdv10CopierClosedEnds: NewCopier and Add refuse a reader or writer
// closed already, with an error matching os.ErrClosed as the file's own
// Read or Write returns (and io.Copy), as they refuse one with no usable
// descriptor, instead of taking a writer that can receive nothing or
// failing with internal/poll's "use of closed file".
func TestAdv10CopierClosedEnds(t *testing.T) {
	fdtest.Check(t)
	cases := []struct {
		name string
		run  func(t *testing.T, start func(context.Context, *PipeReader, ...*PipeWriter) (*Copier, error)) error
	}{
		{"NewCopier/reader", func(t *testing.T, start func(context.Context, *PipeReader, ...*PipeWriter) (*Copier, error)) error {
			r, _ := ptNewPipe(t)
			w := newCopierSinkT(t, -1)
			defer w.finish()
			r.Close()
			c, err := NewCopier(context.Background(), r, w.w)
			if c != nil {
				c.Wait()
			}
			return err
		}},
		{"start/writer", func(t *testing.T, start func(context.Context, *PipeReader, ...*PipeWriter) (*Copier, error)) error {
			r, in := ptNewPipe(t)
			w := newCopierSinkT(t, -1)
			defer w.finish()
			w.w.Close()
			c, err := start(context.Background(), r, w.w)
			if c != nil {
				in.Close()
				c.Wait()
			}
			return err
		}},
		{"Add/writer", func(t *testing.T, start func(context.Context, *PipeReader, ...*PipeWriter) (*Copier, error)) error {
			r, in := ptNewPipe(t)
			c, err := start(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { in.Close(); c.Wait() }()
			w := newCopierSinkT(t, -1)
			defer w.finish()
			w.w.Close()
			err = c.Add(w.w)
			if n := c.Writers(); n != 0 {
				t.Errorf("Writers = %d after adding a closed writer", n)
			}
			return err
		}},
	}
	for _, fan := range copierFans {
		for _, tc := range cases {
			if tc.name == "NewCopier/reader" && fan.name != "NewCopier" {
				continue // runs no fan of the table's
			}
			t.Run(fan.name+"/"+tc.name, func(t *testing.T) {
				if err := tc.run(t, fan.start); !errors.Is(err, os.ErrClosed) {
					t.Errorf("err = %v; want one matching os.ErrClosed", err)
				}
			})
		}
	}
}

// TestAdv10FanOutHugeBuffer: FanOutBuffer accepts any positive size,
// and the largest must not break a fan-out: the userspace one made each
// destination's queue with room for Buffer/Chunk chunks at once, which
// for math.MaxInt panicked (makechan: size out of range) in the
// caller's goroutine, and for 1 TiB allocated 384 MiB per destination.
func TestAdv10FanOutHugeBuffer(t *testing.T) {
	fdtest.Check(t)
	// Not closed after a panic, which leaves its FanOut counted in
	// flight: Close would wait for it forever.
	e, err := NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	panicked := false
	defer func() {
		if !panicked {
			e.Close()
		}
	}()
	data := fdtest.Random(1<<20 + 3)
	for _, sk := range adv10Sources() {
		for _, size := range []int{min(1<<40, math.MaxInt), math.MaxInt} {
			t.Run(fmt.Sprintf("%s/%d", sk.name, size), func(t *testing.T) {
				src, _ := sk.make(t, data)
				var ws []io.Writer
				var fins []func() []byte
				for _, k := range []string{"pipe", "tcp"} {
					w, fin := captureSink(t, k)
					ws, fins = append(ws, w), append(fins, fin)
				}
				res := func() (res []Result) {
					defer func() {
						if p := recover(); p != nil {
							panicked = true
							t.Fatalf("FanOut panicked: %v", p)
						}
					}()
					return e.FanOut(context.Background(), src, ws, FanOutBuffer(size))
				}()
				for i, r := range res {
					got := fins[i]()
					if r.Err != nil || r.Written != int64(len(data)) || !bytes.Equal(got, data) {
						t.Errorf("destination %d: %+v, received %d bytes; want all %d", i, r, len(got), len(data))
					}
				}
			})
		}
	}
}

// TestAdv10FanOutClosedEnds: a kernel fan-out whose destination
// (*PipeWriter, *os.File pipe, TCP connection) is closed, or whose source
// (*PipeReader, *os.File pipe) is closed while it waits for input,
// reports for it an error matching os.ErrClosed (net.ErrClosed for a
// net.Conn), as io.Copy and the userspace fan-out do, not internal/poll's
// "use of closed file"; the other destinations receive every byte.
func TestAdv10FanOutClosedEnds(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	data := fdtest.Random(1<<20 + 3)
	closed := func(err error) bool { return errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) }
	t.Run("destinations", func(t *testing.T) {
		for _, sk := range adv10Sources() {
			t.Run(sk.name, func(t *testing.T) {
				src, _ := sk.make(t, data)
				_, pw := ptNewPipe(t)
				pw.Close()
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				w.Close()
				c, d := tcpPair(t)
				defer d.Close()
				c.Close()
				live, finish := captureSink(t, "pipe")
				res := e.FanOut(context.Background(), src, []io.Writer{pw, w, c, live})
				got := finish()
				for i, r := range res[:3] {
					if r.Written != 0 || !closed(r.Err) {
						t.Errorf("closed destination %d: %+v; want an error matching os.ErrClosed", i, r)
					}
				}
				if r := res[3]; r.Err != nil || !bytes.Equal(got, data) {
					t.Errorf("open destination: %+v, received %d bytes; want all %d", r, len(got), len(data))
				}
			})
		}
	})
	for _, sk := range []string{"PipeReader", "os.Pipe"} {
		t.Run("source/"+sk, func(t *testing.T) {
			var src io.ReadCloser
			if sk == "PipeReader" {
				r, _ := ptNewPipe(t)
				src = r
			} else {
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
				src = r
			}
			var ws []io.Writer
			var fins []func() []byte
			for _, k := range []string{"pipe", "tcp"} {
				w, fin := captureSink(t, k)
				ws, fins = append(ws, w), append(fins, fin)
			}
			done := make(chan []Result, 1)
			go func() { done <- e.FanOut(context.Background(), src, ws) }()
			time.Sleep(50 * time.Millisecond) // the fan-out waits for input
			src.Close()
			var res []Result
			select {
			case res = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("FanOut did not end when its source was closed")
			}
			for i, r := range res {
				fins[i]()
				if !errors.Is(r.Err, os.ErrClosed) {
					t.Errorf("destination %d: %+v; want an error matching os.ErrClosed", i, r)
				}
			}
		})
	}
}
