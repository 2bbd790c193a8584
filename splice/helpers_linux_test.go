//go:build linux

package splice

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
	"golang.org/x/sys/unix"
)

// endOf returns the End Copy uses for v (an *os.File or net.Conn) and a
// reset of its deadlines, as the root package's endpoints do.
func endOf(t testing.TB, v syscall.Conn, read bool) *End {
	t.Helper()
	rc, err := v.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	e := End{Conn: rc}
	if f, ok := v.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeNamedPipe != 0 {
			e.Pipe = true
		}
	}
	type dl interface {
		SetReadDeadline(time.Time) error
		SetWriteDeadline(time.Time) error
	}
	if d, ok := v.(dl); ok {
		if read {
			e.Wake = func() { d.SetReadDeadline(time.Unix(1, 0)) }
			e.Reset = func() { d.SetReadDeadline(time.Time{}) }
		} else {
			e.Wake = func() { d.SetWriteDeadline(time.Unix(1, 0)) }
			e.Reset = func() { d.SetWriteDeadline(time.Time{}) }
		}
	}
	return &e
}

// src is a source descriptor fed with data; closeCopyEnd closes the end
// the copy read from.
type src struct {
	conn  syscall.Conn
	close func()
	wait  func() // waits for the feeder
}

// dst is a destination descriptor; finish closes the copy's end and
// returns what arrived on the other side.
type dst struct {
	conn   syscall.Conn
	finish func() []byte
}

type srcKind struct {
	name string
	make func(t *testing.T, data []byte, keepOpen bool) src
}

type dstKind struct {
	name string
	make func(t *testing.T) dst
}

var srcKinds = []srcKind{
	{"file", func(t *testing.T, data []byte, _ bool) src {
		f := tempFile(t, append([]byte("prefix"), data...))
		if _, err := f.Seek(6, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		return src{conn: f, close: func() { f.Close() }, wait: func() {}}
	}},
	{"pipe", func(t *testing.T, data []byte, keepOpen bool) src {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		return feedFile(r, w, data, keepOpen)
	}},
	{"fifo", func(t *testing.T, data []byte, keepOpen bool) src {
		r, w := fifo(t)
		return feedFile(r, w, data, keepOpen)
	}},
	{"tcp", func(t *testing.T, data []byte, keepOpen bool) src {
		a, b := connPair(t, "tcp")
		return feedConn(a, b, data, keepOpen)
	}},
	{"unix", func(t *testing.T, data []byte, keepOpen bool) src {
		a, b := connPair(t, "unix")
		return feedConn(a, b, data, keepOpen)
	}},
}

var dstKinds = []dstKind{
	{"file", func(t *testing.T) dst {
		f := tempFile(t, nil)
		return dst{conn: f, finish: func() []byte {
			b, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			return b
		}}
	}},
	{"pipe", func(t *testing.T) dst {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		return drainFile(r, w)
	}},
	{"fifo", func(t *testing.T) dst {
		r, w := fifo(t)
		return drainFile(r, w)
	}},
	{"tcp", func(t *testing.T) dst {
		a, b := connPair(t, "tcp")
		return drainConn(a, b)
	}},
	{"unix", func(t *testing.T) dst {
		a, b := connPair(t, "unix")
		return drainConn(a, b)
	}},
}

func tempFile(t testing.TB, data []byte) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	return f
}

// copyResult is what a Copy run by goCopy returned.
type copyResult struct {
	n   int64
	err error
}

// goCopy runs Copy in a goroutine; the channel it returns gets the
// result.
func goCopy(ctx context.Context, dst, src *End, limit int64, pool *Pool) <-chan copyResult {
	done := make(chan copyResult, 1)
	go func() {
		n, _, err := Copy(ctx, dst, src, limit, pool)
		done <- copyResult{n, err}
	}()
	return done
}

// waitStuck waits (under the caller's guard) until the copy metered by
// m has delivered something and then nothing more for 20 ms: its
// destination is full and it waits for room.
func waitStuck(m *countMeter) {
	for {
		before := m.load()
		time.Sleep(20 * time.Millisecond)
		if before > 0 && m.load() == before {
			return
		}
	}
}

// sendUrgent writes before, then one byte of TCP urgent data ('!',
// MSG_OOB), then after, on b, and shuts b's write side: the reader's
// splice stops at the mark. before and the mark go in segments of
// their own.
func sendUrgent(t testing.TB, b *net.TCPConn, before, after []byte) {
	t.Helper()
	if _, err := b.Write(before); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // a segment of its own
	fdtest.SendOOB(t, b)
	time.Sleep(20 * time.Millisecond) // the mark in a segment of its own
	if _, err := b.Write(after); err != nil {
		t.Fatal(err)
	}
	b.CloseWrite()
}

// bigPipe returns a pipe of 1 MiB (F_SETPIPE_SZ), closed when the test
// ends; the test is skipped where the kernel refuses that size.
func bigPipe(t testing.TB) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	wc, err := w.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	wc.Control(func(fd uintptr) { _, err = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 1<<20) })
	if err != nil {
		t.Skipf("a 1 MiB pipe: %v", err)
	}
	return r, w
}

// fifo makes a fifo and opens both ends non-blocking, as pipes.OpenFifo does.
func fifo(t testing.TB) (r, w *os.File) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(p, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, err = os.OpenFile(p, os.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

func connPair(t testing.TB, network string) (net.Conn, net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "sock")
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			ch <- nil
			return
		}
		ch <- c
	}()
	a, err := net.Dial(network, l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-ch
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func feedFile(r, w *os.File, data []byte, keepOpen bool) src {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.Write(data)
		if !keepOpen {
			w.Close()
		}
	}()
	return src{conn: r, close: func() { r.Close(); w.Close() }, wait: wg.Wait}
}

func feedConn(copyEnd, peer net.Conn, data []byte, keepOpen bool) src {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		peer.Write(data)
		if !keepOpen {
			peer.(interface{ CloseWrite() error }).CloseWrite()
		}
	}()
	return src{conn: copyEnd.(syscall.Conn), close: func() { copyEnd.Close(); peer.Close() }, wait: wg.Wait}
}

func drainFile(r, w *os.File) dst {
	var buf bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(&buf, r)
		r.Close()
	}()
	return dst{conn: w, finish: func() []byte {
		w.Close()
		<-done
		return buf.Bytes()
	}}
}

func drainConn(copyEnd, peer net.Conn) dst {
	var buf bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(&buf, peer)
	}()
	return dst{conn: copyEnd.(syscall.Conn), finish: func() []byte {
		copyEnd.Close()
		<-done
		return buf.Bytes()
	}}
}

func sum(b []byte) [32]byte { return sha256.Sum256(b) }

func offset(t testing.TB, f *os.File) int64 {
	t.Helper()
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		t.Fatal(err)
	}
	return off
}
