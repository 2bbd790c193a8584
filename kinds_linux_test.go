//go:build !pipes_portable

package pipes

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// The fd kinds a copy is tested on, as sources and as destinations. Each
// factory returns the end the copy uses and arranges the other end: a
// source is fed with data and closed; a destination is drained into a
// hash until EOF.

type source struct {
	r     io.Reader
	close func() // closes the copy's end, after the copy
}

type sink struct {
	w      io.Writer
	finish func() (n int64, sum [32]byte) // closes the copy's end, waits for the drain
}

type sourceKind struct {
	name string
	make func(t *testing.T, data []byte) source
}

type sinkKind struct {
	name string
	make func(t *testing.T) sink
}

var sourceKinds = []sourceKind{
	{"file", fileSource},
	{"pipe", func(t *testing.T, data []byte) source {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		feed(t, w, data)
		return source{r, func() { r.Close() }}
	}},
	{"fifo", func(t *testing.T, data []byte) source {
		r, w := fifoPair(t)
		feed(t, w, data)
		return source{r, func() { r.Close() }}
	}},
	{"pipes.New", func(t *testing.T, data []byte) source {
		r, w, err := New()
		if err != nil {
			t.Fatal(err)
		}
		feed(t, w, data)
		return source{r, func() { r.Close() }}
	}},
	{"tcp", func(t *testing.T, data []byte) source {
		a, b := tcpPair(t)
		feed(t, b, data)
		return source{a, func() { a.Close() }}
	}},
	{"unix", func(t *testing.T, data []byte) source {
		a, b := unixPair(t)
		feed(t, b, data)
		return source{a, func() { a.Close() }}
	}},
	{"reader", func(t *testing.T, data []byte) source {
		return source{onlyReader{bytes.NewReader(data)}, func() {}}
	}},
}

var sinkKinds = []sinkKind{
	{"file", fileSink},
	{"pipe", func(t *testing.T) sink {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		return drainInto(t, w, r)
	}},
	{"pipes.New", func(t *testing.T) sink {
		r, w, err := New()
		if err != nil {
			t.Fatal(err)
		}
		return drainInto(t, w, r)
	}},
	{"tcp", func(t *testing.T) sink {
		a, b := tcpPair(t)
		return drainInto(t, a, b)
	}},
	{"unix", func(t *testing.T) sink {
		a, b := unixPair(t)
		return drainInto(t, a, b)
	}},
	{"writer", func(t *testing.T) sink {
		h := &hashWriter{h: sha256.New()}
		return sink{onlyWriter{h}, func() (int64, [32]byte) { return h.n, h.sum() }}
	}},
}

type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

type hashWriter struct {
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
	n int64
}

func (h *hashWriter) Write(p []byte) (int, error) {
	h.n += int64(len(p))
	return h.h.Write(p)
}

func (h *hashWriter) sum() (s [32]byte) {
	copy(s[:], h.h.Sum(nil))
	return s
}

func fileSource(t *testing.T, data []byte) source {
	f := fdtest.TempFile(t, data)
	fdtest.Evict(t, f)
	return source{f, func() { f.Close() }}
}

func fileSink(t *testing.T) sink {
	path := filepath.Join(t.TempDir(), "dst")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	return sink{f, func() (int64, [32]byte) {
		f.Close()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Error(err)
		}
		return int64(len(b)), sha256.Sum256(b)
	}}
}

// feed writes data to w from a goroutine and closes w; the test waits for it.
func feed(t *testing.T, w io.WriteCloser, data []byte) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer w.Close()
		if _, err := w.Write(data); err != nil {
			t.Errorf("feeding the source: %v", err)
		}
	}()
	t.Cleanup(wg.Wait)
}

// drainInto hashes everything read from r until EOF; finish closes w
// (the copy's end) and returns what was read.
func drainInto(t *testing.T, w io.WriteCloser, r io.ReadCloser) sink {
	h := &hashWriter{h: sha256.New()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := io.Copy(h, r); err != nil {
			t.Errorf("draining the destination: %v", err)
		}
	}()
	t.Cleanup(func() {
		w.Close()
		<-done
		r.Close()
	})
	return sink{w, func() (int64, [32]byte) {
		w.Close()
		<-done
		return h.n, h.sum()
	}}
}

func tcpPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan *net.TCPConn, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			t.Error(err)
		}
		ch <- c
	}()
	a, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	b := <-ch
	if b == nil {
		t.FailNow()
	}
	return a, b
}

// unixPair returns the two ends of a connected unix stream socketpair.
func unixPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	return fdtest.SocketPair(t, syscall.SOCK_STREAM)
}

// newFifo makes a fifo in a temporary directory and returns its path.
func newFifo(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fifoPair opens both ends of a new fifo.
func fifoPair(t testing.TB) (*os.File, *os.File) {
	path := newFifo(t)
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return r, w
}

// TestCopyPageSharing shows what Copy documents: bytes copied from a file
// into a pipe are page references, so a write to the file before the
// pipe is read shows through; hiding the descriptor gives a snapshot.
func TestCopyPageSharing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		wrap     func(*os.File) io.Reader
		snapshot bool
	}{
		{"kernel", func(f *os.File) io.Reader { return f }, false},
		{"hidden descriptor", func(f *os.File) io.Reader { return struct{ io.Reader }{f} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.CreateTemp(t.TempDir(), "shared")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			old := bytes.Repeat([]byte("a"), 4096)
			if _, err := f.Write(old); err != nil {
				t.Fatal(err)
			}
			f.Seek(0, io.SeekStart)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()
			if n, err := Copy(w, tc.wrap(f)); n != 4096 || err != nil {
				t.Fatalf("Copy = %d, %v", n, err)
			}
			if _, err := f.WriteAt(bytes.Repeat([]byte("b"), 4096), 0); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 4096)
			if _, err := io.ReadFull(r, got); err != nil {
				t.Fatal(err)
			}
			want := byte('b')
			if tc.snapshot {
				want = 'a'
			}
			if got[0] != want || got[4095] != want {
				t.Errorf("pipe reader saw %q...%q, want %q", got[0], got[4095], want)
			}
		})
	}
}
