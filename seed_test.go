//go:build linux && !pipes_portable

package pipes

// Equivalents of the original library's tests (cpuguy83/pipes:
// pipes_linux_test.go, copier_linux_test.go), against this package.

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
	"golang.org/x/sys/unix"
)

func seedCreateFile(t testing.TB, total int64) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	data := make([]byte, 1<<20)
	for left := total; left > 0; {
		n, err := f.Write(data[:min(left, int64(len(data)))])
		if err != nil {
			t.Fatal(err)
		}
		left -= int64(n)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	return f
}

func seedDrain(r *PipeReader) {
	io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, make([]byte, 8192))
}

func seedReadFrom(t testing.TB, w *PipeWriter, src io.Reader, total int64) {
	t.Helper()
	n, err := w.ReadFrom(src)
	if err != nil {
		t.Fatal(err)
	}
	if n != total {
		t.Errorf("ReadFrom copied %d bytes, want %d", n, total)
	}
}

func TestSeedReadFrom(t *testing.T) {
	fdtest.Check(t)
	t.Run("raw/regular file", func(t *testing.T) {
		f := seedCreateFile(t, 1e6)
		r, w := ptNewPipe(t)
		go seedDrain(r)
		seedReadFrom(t, w, f, 1e6)
	})
	t.Run("raw/limited reader", func(t *testing.T) {
		f := seedCreateFile(t, 2e6)
		r, w := ptNewPipe(t)
		go seedDrain(r)
		lr := &io.LimitedReader{R: f, N: 1e6}
		seedReadFrom(t, w, lr, 1e6)
		if lr.N != 0 {
			t.Errorf("LimitedReader.N = %d after the copy, want 0", lr.N)
		}
		if off, _ := f.Seek(0, io.SeekCurrent); off != 1e6 {
			t.Errorf("file offset %d, want 1e6", off)
		}
	})
	t.Run("userspace/fallback copy", func(t *testing.T) {
		r, w := ptNewPipe(t)
		go seedDrain(r)
		seedReadFrom(t, w, bytes.NewReader(make([]byte, 1e6)), 1e6)
	})
	t.Run("userspace/limited reader", func(t *testing.T) {
		r, w := ptNewPipe(t)
		go seedDrain(r)
		lr := &io.LimitedReader{R: bytes.NewReader(make([]byte, 2e6)), N: 1e6}
		seedReadFrom(t, w, lr, 1e6)
		if lr.N != 0 {
			t.Errorf("LimitedReader.N = %d, want 0", lr.N)
		}
	})
}

// TestSeedOpenFifoNonblockWronly: the original opens O_WRONLY|O_NONBLOCK
// without a reader (through a temporary RDWR open).
func TestSeedOpenFifoNonblockWronly(t *testing.T) {
	fdtest.Check(t)
	p := filepath.Join(t.TempDir(), "fifo")
	_, w, err := OpenFifo(p, unix.O_NONBLOCK|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSeedAsyncOpenFifo(t *testing.T) {
	fdtest.Check(t)
	p := filepath.Join(t.TempDir(), "fifo")
	results, err := AsyncOpenFifo(p, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	select {
	case res := <-results:
		t.Fatalf("write-only open completed without a reader: %+v", res)
	default:
	}
	r, _, err := OpenFifo(p, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	select {
	case res := <-results:
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if res.R != nil {
			t.Error("reader returned for a write-only open")
		}
		if res.W == nil {
			t.Fatal("no writer")
		}
		defer res.W.Close()
		if _, err := res.W.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(r, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("read %q, %v", buf, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("timeout waiting for the async open")
	}
}

func TestSeedOpenFifoCloseRDWR(t *testing.T) {
	fdtest.Check(t)
	r, w, err := OpenFifo(filepath.Join(t.TempDir(), "fifo"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// lockedBuffer is a bytes.Buffer safe for a writer and a checker at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func seedCheckBuffer(t *testing.T, buf *lockedBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if buf.String() == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Errorf("got %q, want %q", buf.String(), want)
}

// TestSeedCopier: a writer added later gets what is written after it was
// added. (The original expected the late writer to see "hello world",
// bytes written before it existed; no fan-out can do that.)
func TestSeedCopier(t *testing.T) {
	fdtest.Check(t)
	r1, w1 := ptNewPipe(t)
	r2, w2 := ptNewPipe(t)
	r3, w3 := ptNewPipe(t)
	r4, w4 := ptNewPipe(t)
	var buf1, buf2, buf3 lockedBuffer
	var wg sync.WaitGroup
	for _, p := range []struct {
		b *lockedBuffer
		r *PipeReader
	}{{&buf1, r2}, {&buf2, r3}, {&buf3, r4}} {
		wg.Add(1)
		go func() { defer wg.Done(); io.Copy(p.b, struct{ io.Reader }{p.r}) }()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := NewCopier(ctx, r1, w2, w3)
	if err != nil {
		t.Fatal(err)
	}
	w1.Write([]byte("hello"))
	seedCheckBuffer(t, &buf1, "hello")
	seedCheckBuffer(t, &buf2, "hello")
	if err := c.Add(w4); err != nil {
		t.Fatal(err)
	}
	w1.Write([]byte(" world"))
	seedCheckBuffer(t, &buf1, "hello world")
	seedCheckBuffer(t, &buf2, "hello world")
	seedCheckBuffer(t, &buf3, " world")
	w1.Close()
	if err := c.Wait(); err != nil {
		t.Fatalf("Wait after EOF: %v", err)
	}
	w2.Close()
	w3.Close()
	w4.Close()
	wg.Wait()
}
