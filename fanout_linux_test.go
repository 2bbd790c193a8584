//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// fanSinks are n destinations of one socket kind ("unix" or "tcp"), each
// drained by a goroutine into a CRC-32C (hardware-accelerated, so that
// hashing 256 copies of 64 MiB does not dominate the test).
type fanSinks struct {
	ws    []io.Writer
	peers []net.Conn
	gates []chan struct{} // closed to let a drain start; nil: at once
	mu    sync.Mutex      // guards gates
	n     []int64
	sum   []uint32
	err   []error
	wg    sync.WaitGroup
}

// newFanSinks makes the destinations. Drains listed in gated wait for
// their gate before reading anything.
func newFanSinks(t *testing.T, kind string, n int, gated ...int) *fanSinks {
	t.Helper()
	s := &fanSinks{n: make([]int64, n), sum: make([]uint32, n), err: make([]error, n), gates: make([]chan struct{}, n)}
	for _, g := range gated {
		s.gates[g] = make(chan struct{})
	}
	for i := 0; i < n; i++ {
		var a, b net.Conn
		if kind == "tcp" {
			a, b = tcpPair(t)
		} else {
			a, b = unixPair(t)
		}
		s.ws = append(s.ws, a)
		s.peers = append(s.peers, b)
		s.wg.Add(1)
		gate := s.gates[i]
		go func() {
			defer s.wg.Done()
			if gate != nil {
				<-gate
			}
			h := crc32.New(castagnoli)
			s.n[i], s.err[i] = io.Copy(h, b)
			s.sum[i] = h.Sum32()
		}()
	}
	t.Cleanup(s.close)
	return s
}

// open lets gated drain i start.
func (s *fanSinks) open(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.gates[i]; g != nil {
		s.gates[i] = nil
		close(g)
	}
}

// finish closes the copy's ends and waits for every drain.
func (s *fanSinks) finish() {
	for _, w := range s.ws {
		w.(net.Conn).Close()
	}
	for i := range s.gates {
		s.open(i)
	}
	s.wg.Wait()
}

func (s *fanSinks) close() {
	s.finish()
	for _, p := range s.peers {
		p.Close()
	}
}

// check fails t unless destination i received data whole.
func (s *fanSinks) check(t *testing.T, i int, data []byte) {
	t.Helper()
	if s.err[i] != nil {
		t.Errorf("destination %d: drain: %v", i, s.err[i])
	}
	if s.n[i] != int64(len(data)) || s.sum[i] != crc32.Checksum(data, castagnoli) {
		t.Errorf("destination %d received %d bytes (checksum match %v), want %d", i, s.n[i], s.sum[i] == crc32.Checksum(data, castagnoli), len(data))
	}
}

func fanTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestFanOutSockets sends a file to 1, 16 and 256 unix and TCP sockets
// and checks every destination by checksum, and that the file offset is
// left at its end.
func TestFanOutSockets(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	sizes := []int{1 << 20}
	if !testing.Short() {
		sizes = append(sizes, 64<<20)
	}
	for _, size := range sizes {
		data := fdtest.Random(size)
		for _, kind := range []string{"unix", "tcp"} {
			for _, n := range []int{1, 16, 256} {
				if raceEnabled && size > 1<<20 && n > 16 {
					continue // 16 GiB through the race detector: run without -race
				}
				t.Run(fmt.Sprintf("%dMiB/%s/%d", size>>20, kind, n), func(t *testing.T) {
					src := fileSource(t, data)
					defer src.close()
					sinks := newFanSinks(t, kind, n)
					start := time.Now()
					res := e.FanOut(fanTimeout(t, 2*time.Minute), src.r, sinks.ws)
					el := time.Since(start)
					sinks.finish()
					for i, r := range res {
						if r.Err != nil || r.Written != int64(size) {
							t.Errorf("destination %d: %+v, want %d bytes", i, r, size)
						}
						sinks.check(t, i, data)
					}
					if off, _ := src.r.(*os.File).Seek(0, io.SeekCurrent); off != int64(size) {
						t.Errorf("file offset after FanOut = %d, want %d", off, size)
					}
					t.Logf("%d x %d bytes in %v: %.0f MB/s delivered", n, size, el, float64(n*size)/el.Seconds()/1e6)
				})
			}
		}
	}
}

// TestFanOutKinds fans every source kind (including a reader with no
// descriptor) out to one destination of every sink kind (including a
// writer with no descriptor), with sizes around the buffer sizes.
func TestFanOutKinds(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	for _, sk := range sourceKinds {
		for _, size := range []int{0, 1, 64<<10 + 1, 3<<20 + 17} {
			t.Run(fmt.Sprintf("%s/%d", sk.name, size), func(t *testing.T) {
				data := fdtest.Random(size)
				src := sk.make(t, data)
				defer src.close()
				var sinks []sink
				var ws []io.Writer
				for _, dk := range sinkKinds {
					s := dk.make(t)
					sinks = append(sinks, s)
					ws = append(ws, s.w)
				}
				res := e.FanOut(fanTimeout(t, time.Minute), src.r, ws)
				for i, r := range res {
					if r.Err != nil || r.Written != int64(size) {
						t.Errorf("%s: %+v, want %d bytes", sinkKinds[i].name, r, size)
					}
					n, sum := sinks[i].finish()
					if n != int64(size) || sum != sha256.Sum256(data) {
						t.Errorf("%s received %d bytes, want %d (hash match %v)", sinkKinds[i].name, n, size, sum == sha256.Sum256(data))
					}
				}
			})
		}
	}
}

// TestFanOutLimitedReader checks that FanOut reads a file from its
// current offset, at most N bytes, and leaves the offset after them.
func TestFanOutLimitedReader(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	data := fdtest.Random(2<<20 + 5)
	for _, kind := range []string{"unix", "writer"} {
		src := fileSource(t, data)
		f := src.r.(*os.File)
		if _, err := f.Seek(1000, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		const limit = 1<<20 + 3
		lr := &io.LimitedReader{R: f, N: limit}
		var ws []io.Writer
		var finish []func() (int64, [32]byte)
		for range 3 {
			s := sinkKinds[4].make(t) // unix
			if kind == "writer" {
				s = sinkKinds[5].make(t)
			}
			ws = append(ws, s.w)
			finish = append(finish, s.finish)
		}
		res := e.FanOut(context.Background(), lr, ws)
		for i, r := range res {
			if r.Err != nil || r.Written != limit {
				t.Errorf("%s: destination %d: %+v, want %d bytes", kind, i, r, limit)
			}
			if _, sum := finish[i](); sum != sha256.Sum256(data[1000:1000+limit]) {
				t.Errorf("%s: destination %d: wrong bytes", kind, i)
			}
		}
		if off, _ := f.Seek(0, io.SeekCurrent); off != 1000+limit || lr.N != 0 {
			t.Errorf("%s: offset %d, N %d; want %d, 0", kind, off, lr.N, 1000+limit)
		}
		src.close()
	}
}

// TestFanOutFifoWaitsForWriter: a read-only fifo with no writer yet is
// not at EOF for FanOut (as for Copy): every destination gets the bytes of
// the writer that opens it later.
func TestFanOutFifoWaitsForWriter(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	r, path := fifoNoWriter(t)
	data := fdtest.Random(1<<20 + 3)
	var ws []io.Writer
	var finish []func() (int64, [32]byte)
	for range 3 {
		s := sinkKinds[4].make(t) // unix
		ws = append(ws, s.w)
		finish = append(finish, s.finish)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		w.Write(data)
		w.Close()
	}()
	res := e.FanOut(context.Background(), r, ws)
	for i, res := range res {
		if res.Err != nil || res.Written != int64(len(data)) {
			t.Errorf("destination %d: %+v, want %d bytes", i, res, len(data))
		}
		if _, sum := finish[i](); sum != sha256.Sum256(data) {
			t.Errorf("destination %d: wrong bytes", i)
		}
	}
}

// TestFanOutStalledWait: under the default policy a destination that
// stops reading holds the others back; once it resumes, all finish whole.
func TestFanOutStalledWait(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	data := fdtest.Random(16 << 20)
	for _, kind := range []string{"unix", "tcp"} {
		t.Run(kind, func(t *testing.T) {
			src := fileSource(t, data)
			defer src.close()
			sinks := newFanSinks(t, kind, 4, 2)
			const stall = 300 * time.Millisecond
			time.AfterFunc(stall, func() { sinks.open(2) })
			start := time.Now()
			res := e.FanOut(fanTimeout(t, time.Minute), src.r, sinks.ws, FanOutBuffer(256<<10))
			if el := time.Since(start); el < stall {
				t.Errorf("FanOut returned after %v, before the stalled destination resumed", el)
			}
			sinks.finish()
			for i, r := range res {
				if r.Err != nil || r.Written != int64(len(data)) {
					t.Errorf("destination %d: %+v", i, r)
				}
				sinks.check(t, i, data)
			}
		})
	}
}

// TestFanOutStalledEvict: with FanOutEvictAfter, a destination that stops
// reading is evicted with ErrEvicted and os.ErrDeadlineExceeded, and the
// others finish on time. Both the kernel path (file source) and the
// userspace path (a source with no descriptor) are checked.
func TestFanOutStalledEvict(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	data := fdtest.Random(16 << 20)
	for _, srcKind := range []string{"file", "reader"} {
		for _, kind := range []string{"unix", "tcp"} {
			t.Run(srcKind+"/"+kind, func(t *testing.T) {
				var src io.Reader = bytes.NewReader(data)
				if srcKind == "file" {
					s := fileSource(t, data)
					defer s.close()
					src = s.r
				} else {
					src = onlyReader{src}
				}
				sinks := newFanSinks(t, kind, 4, 1)
				// Long enough that a healthy reader starved by a loaded
				// machine (under -race: 200 ms happened) is not evicted.
				const after = time.Second
				start := time.Now()
				res := e.FanOut(fanTimeout(t, time.Minute), src, sinks.ws, FanOutEvictAfter(after), FanOutBuffer(256<<10))
				el := time.Since(start)
				if el > 10*time.Second {
					t.Errorf("FanOut took %v with an eviction deadline of %v", el, after)
				}
				r := res[1]
				if !errors.Is(r.Err, ErrEvicted) || !errors.Is(r.Err, os.ErrDeadlineExceeded) || r.Written >= int64(len(data)) {
					t.Errorf("stalled destination: %+v; want ErrEvicted and os.ErrDeadlineExceeded", r)
				}
				sinks.finish()
				for i, r := range res {
					if i == 1 {
						if sinks.n[i] != r.Written {
							t.Errorf("stalled destination received %d bytes, Written says %d", sinks.n[i], r.Written)
						}
						continue
					}
					if r.Err != nil || r.Written != int64(len(data)) {
						t.Errorf("destination %d: %+v", i, r)
					}
					sinks.check(t, i, data)
				}
				// The eviction cleared the write deadline it set.
				if _, err := sinks.ws[1].Write([]byte("x")); err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("write after eviction: %v", err)
				}
			})
		}
	}
}

// TestFanOutReset: destinations whose peers are gone fail with
// ECONNRESET or EPIPE; the others receive everything.
func TestFanOutReset(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	data := fdtest.Random(8 << 20)
	for _, srcKind := range []string{"file", "reader"} {
		for _, kind := range []string{"unix", "tcp"} {
			t.Run(srcKind+"/"+kind, func(t *testing.T) {
				var src io.Reader = onlyReader{bytes.NewReader(data)}
				if srcKind == "file" {
					s := fileSource(t, data)
					defer s.close()
					src = s.r
				}
				sinks := newFanSinks(t, kind, 3, 0)
				// Destination 0's peer goes away with data unread: RST on TCP.
				time.AfterFunc(50*time.Millisecond, func() {
					if c, ok := sinks.peers[0].(*net.TCPConn); ok {
						c.SetLinger(0)
					}
					sinks.peers[0].Close()
				})
				res := e.FanOut(fanTimeout(t, time.Minute), src, sinks.ws)
				sinks.finish()
				if err := res[0].Err; !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
					t.Errorf("reset destination: %+v; want ECONNRESET or EPIPE", res[0])
				}
				for i := 1; i < 3; i++ {
					if res[i].Err != nil || res[i].Written != int64(len(data)) {
						t.Errorf("destination %d: %+v", i, res[i])
					}
					sinks.check(t, i, data)
				}
			})
		}
	}
}

// TestFanOutCancel cancels while the source is idle, while destinations
// are full, and before the start: every result wraps context.Canceled.
func TestFanOutCancel(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	for _, srcKind := range []string{"tcp", "reader"} {
		for _, stalled := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stalled=%v", srcKind, stalled), func(t *testing.T) {
				a, b := tcpPair(t)
				defer a.Close()
				defer b.Close()
				var src io.Reader = a
				if srcKind == "reader" {
					// No descriptor, but an interruptible Read.
					src = struct {
						io.Reader
						readDeadliner
					}{a, a}
				}
				// 4 MiB, then the source idles without EOF.
				go b.Write(fdtest.Random(4 << 20))
				var gated []int
				if stalled {
					gated = []int{0, 1, 2}
				}
				sinks := newFanSinks(t, "unix", 3, gated...)
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(200*time.Millisecond, cancel)
				res := e.FanOut(ctx, src, sinks.ws, FanOutBuffer(64<<10))
				for i, r := range res {
					if !errors.Is(r.Err, context.Canceled) {
						t.Errorf("destination %d: %+v; want context.Canceled", i, r)
					}
				}
				// Deadlines set to interrupt waits are cleared.
				a.SetReadDeadline(time.Now().Add(time.Hour))
				sinks.finish()
				for i := range res {
					if sinks.n[i] != res[i].Written {
						t.Errorf("destination %d received %d bytes, Written says %d", i, sinks.n[i], res[i].Written)
					}
				}
			})
		}
	}
	t.Run("before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res := e.FanOut(ctx, strings.NewReader("x"), []io.Writer{io.Discard, io.Discard})
		for i, r := range res {
			if !errors.Is(r.Err, context.Canceled) || r.Written != 0 {
				t.Errorf("destination %d: %+v", i, r)
			}
		}
	})
}

// TestFanOutEngineClose: closing the engine stops a fan-out with
// ErrClosed.
func TestFanOutEngineClose(t *testing.T) {
	fdtest.Check(t)
	e, err := NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	a, b := tcpPair(t)
	defer a.Close()
	defer b.Close()
	sinks := newFanSinks(t, "tcp", 2)
	time.AfterFunc(100*time.Millisecond, func() { e.Close() })
	res := e.FanOut(context.Background(), a, sinks.ws)
	for i, r := range res {
		if !errors.Is(r.Err, ErrClosed) || !errors.Is(r.Err, context.Canceled) {
			t.Errorf("destination %d: %+v; want ErrClosed", i, r)
		}
	}
	res = e.FanOut(context.Background(), a, sinks.ws)
	if !errors.Is(res[0].Err, ErrClosed) {
		t.Errorf("after Close: %+v", res[0])
	}
}

// TestFanOutBadInput: nil and empty arguments fail cleanly.
func TestFanOutBadInput(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	if res := e.FanOut(context.Background(), strings.NewReader("x"), nil); len(res) != 0 {
		t.Errorf("no destinations: %v", res)
	}
	res := e.FanOut(context.Background(), nil, []io.Writer{io.Discard})
	if len(res) != 1 || res[0].Err == nil {
		t.Errorf("nil source: %v", res)
	}
	var buf bytes.Buffer
	//lint:ignore SA1012 a nil context is documented to mean Background
	res = e.FanOut(nil, strings.NewReader("hello"), []io.Writer{nil, &buf}, nil)
	if res[0].Err == nil || res[1].Err != nil || buf.String() != "hello" {
		t.Errorf("nil destination: %v, other got %q", res, buf.String())
	}
	// One writer twice: written by two goroutines at once (a data race
	// on a bytes.Buffer under -race), each byte twice. The second is
	// refused; the first receives everything once.
	data := fdtest.Random(1 << 20)
	buf.Reset()
	res = e.FanOut(context.Background(), bytes.NewReader(data), []io.Writer{&buf, io.Discard, &buf})
	if res[0].Err != nil || res[1].Err != nil || !errors.Is(res[2].Err, os.ErrInvalid) || !bytes.Equal(buf.Bytes(), data) {
		t.Errorf("one writer twice: %v, it got %d bytes of %d", res, buf.Len(), len(data))
	}
	// All destinations gone: the source is read no further.
	src := fileSource(t, fdtest.Random(4<<20))
	defer src.close()
	a, b := unixPair(t)
	b.Close()
	res = e.FanOut(context.Background(), src.r, []io.Writer{a})
	a.Close()
	if !errors.Is(res[0].Err, syscall.EPIPE) {
		t.Errorf("dead destination: %v", res)
	}
	if off, _ := src.r.(*os.File).Seek(0, io.SeekCurrent); off >= 4<<20 {
		t.Errorf("source read to offset %d with no destination left", off)
	}
}

// TestFanOutColdFileWarmed fans a file that is not in the page cache out
// to sockets on an io_uring engine: the ring reads its chunks in (Warmed)
// before the fan-out splices them, and every destination gets the file.
// Skipped where io_uring is refused or the file cannot be made cold.
func TestFanOutColdFileWarmed(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	if e.Backend() != BackendIOUring {
		t.Skipf("backend is %s", e.Backend())
	}
	const size = 8 << 20
	data := fdtest.Random(size)
	for _, kind := range []string{"unix", "tcp"} {
		t.Run(kind, func(t *testing.T) {
			src := fileSource(t, data)
			defer src.close()
			f := src.r.(*os.File)
			if n := fdtest.CachedPages(t, f, size); n > 0 {
				t.Skipf("%d pages still in the page cache after POSIX_FADV_DONTNEED (tmpfs?)", n)
			}
			before := e.Stats().Warmed
			sinks := newFanSinks(t, kind, 4)
			res := e.FanOut(fanTimeout(t, time.Minute), f, sinks.ws)
			sinks.finish()
			for i, r := range res {
				if r.Err != nil || r.Written != size {
					t.Errorf("destination %d: %+v, want %d bytes", i, r, size)
				}
				sinks.check(t, i, data)
			}
			if warmed := e.Stats().Warmed - before; warmed == 0 {
				t.Errorf("no chunk of the cold file was read in by the ring (Stats %+v)", e.Stats())
			}
			if off, _ := f.Seek(0, io.SeekCurrent); off != size {
				t.Errorf("file offset after FanOut = %d, want %d", off, size)
			}
		})
	}
}

// readDeadliner is the read deadline of a net.Conn, to embed in a test's
// source that hides the conn's descriptor.
type readDeadliner interface{ SetReadDeadline(time.Time) error }

// TestFanOutRefusedMidway fans a pipe out into a file opened O_DIRECT:
// the first page, written whole into the pipe, is spliced in; the next
// one comes from a socket in two segments, spliced into the pipe as the
// socket's buffers cut it, which the kernel refuses to splice into the
// file (EINVAL) after bytes have moved. The destination must get that page by
// write(2), as io.Copy delivers it, not be evicted with EINVAL.
func TestFanOutRefusedMidway(t *testing.T) {
	fdtest.Check(t)
	path := t.TempDir() + "/direct"
	dst, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_DIRECT, 0o600)
	if err != nil {
		t.Skipf("O_DIRECT: %v", err)
	}
	defer dst.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	data := fdtest.Random(2 * 4096)
	done := make(chan []Result, 1)
	go func() { done <- newTestEngine(t).FanOut(context.Background(), r, []io.Writer{dst}) }()
	if _, err := w.Write(data[:4096]); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if fi, err := os.Stat(path); err == nil && fi.Size() == 4096 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first page did not reach the O_DIRECT file")
		}
	}
	c, peer := tcpPair(t)
	defer c.Close()
	defer peer.Close()
	// Two segments: a pipe gets buffers of 100 and 3996 bytes, which a
	// block-aligned write cannot take as they are. They are spliced into
	// another pipe first, then moved into the source pipe in one splice
	// (which keeps the buffers as they are): a fan-out that read the
	// first alone would write 100 bytes, which no O_DIRECT write takes.
	sr, sw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer sr.Close()
	defer sw.Close()
	for _, b := range [][]byte{data[4096:4196], data[4196:]} {
		if _, err := peer.Write(b); err != nil {
			t.Fatal(err)
		}
		spliceConnToPipe(t, c, sw, len(b))
	}
	spliceConnToPipe(t, sr, w, len(data)-4096)
	w.Close()
	res := <-done
	if res[0].Err != nil || res[0].Written != int64(len(data)) {
		t.Fatalf("FanOut = (%d, %v), want (%d, nil)", res[0].Written, res[0].Err, len(data))
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the file holds %d bytes (%v), not the source's %d", len(got), err, len(data))
	}
}

// spliceConnToPipe splices n bytes from the socket (or pipe) c into
// the pipe w.
func spliceConnToPipe(t *testing.T, c syscall.Conn, w *os.File, n int) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for n > 0 {
		var m int64
		var e error
		if err := rc.Read(func(fd uintptr) bool {
			k, err := unix.Splice(int(fd), nil, int(w.Fd()), nil, n, unix.SPLICE_F_NONBLOCK)
			m, e = int64(k), err // k: int64, or int on 32-bit systems
			return e != unix.EAGAIN
		}); err != nil || e != nil || m == 0 {
			t.Fatalf("splice socket -> pipe: %d, %v, %v", m, err, e)
		}
		n -= int(m)
	}
}

// badCountWriter is a Writer that returns a count of its own for every
// Write: len(p) + extra, with no error.
type badCountWriter struct{ extra int }

func (w badCountWriter) Write(p []byte) (int, error) { return len(p) + w.extra, nil }

// TestFanOutInvalidWriteCount: a destination whose Write returns a
// count below 0 or above what it was given fails as io.Copy fails with
// it ("invalid write result"), counting none of that Write, on both
// fan-out paths; before, its Written took the count as it came (more
// bytes than the source had, or fewer than 0) and the fan-out went on.
func TestFanOutInvalidWriteCount(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	data := fdtest.Random(1 << 20)
	for _, src := range []struct {
		name string
		make func(t *testing.T) io.Reader
	}{
		{"userspace", func(*testing.T) io.Reader { return bytes.NewReader(data) }},
		{"kernel", func(t *testing.T) io.Reader { return fdtest.TempFile(t, data) }},
	} {
		for _, extra := range []int{1, -(1 << 20) - 1} {
			t.Run(fmt.Sprintf("%s/%+d", src.name, extra), func(t *testing.T) {
				_, ioErr := io.Copy(badCountWriter{extra}, struct{ io.Reader }{bytes.NewReader(data)})
				var good bytes.Buffer
				res := e.FanOut(context.Background(), src.make(t), []io.Writer{badCountWriter{extra}, &good})
				if res[0].Err == nil || res[0].Err.Error()[strings.LastIndex(res[0].Err.Error(), ": ")+2:] != ioErr.Error() || res[0].Written != 0 {
					t.Errorf("bad writer: %+v; want Written 0 and io.Copy's error (%v)", res[0], ioErr)
				}
				if res[1].Err != nil || !bytes.Equal(good.Bytes(), data) {
					t.Errorf("other destination: %+v, %d bytes", res[1], good.Len())
				}
			})
		}
	}
}
