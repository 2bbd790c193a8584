//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// ptConnPair returns both ends of a TCP or unix stream connection.
func ptConnPair(t *testing.T, network string) (net.Conn, net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestReadFromSources: PipeWriter.ReadFrom from each kind of source,
// byte-exact, with and without a LimitedReader.
func TestReadFromSources(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(3<<20 + 11)
	sources := map[string]func(t *testing.T) (io.Reader, func()){
		"file": func(t *testing.T) (io.Reader, func()) {
			f, _ := os.CreateTemp(t.TempDir(), "f")
			f.Write(data)
			f.Seek(0, io.SeekStart)
			return f, func() { f.Close() }
		},
		"pipe": func(t *testing.T) (io.Reader, func()) {
			r, w := ptNewPipe(t)
			go func() { w.Write(data); w.Close() }()
			return r, func() {}
		},
		"tcp": func(t *testing.T) (io.Reader, func()) {
			a, b := ptConnPair(t, "tcp")
			go func() { b.Write(data); b.Close() }()
			return a, func() {}
		},
		"unix": func(t *testing.T) (io.Reader, func()) {
			a, b := ptConnPair(t, "unix")
			go func() { b.Write(data); b.Close() }()
			return a, func() {}
		},
		"bytes.Reader": func(t *testing.T) (io.Reader, func()) {
			return bytes.NewReader(data), func() {}
		},
	}
	for name, mk := range sources {
		for _, limit := range []int64{-1, 1, 64 << 10, 1<<20 + 1} {
			t.Run(name, func(t *testing.T) {
				src, done := mk(t)
				defer done()
				want := data
				if limit >= 0 {
					want = data[:limit]
					src = &io.LimitedReader{R: src, N: limit}
				}
				r, w := ptNewPipe(t)
				got := make(chan [32]byte, 1)
				go func() {
					h := sha256.New()
					io.Copy(h, struct{ io.Reader }{r})
					var s [32]byte
					copy(s[:], h.Sum(nil))
					got <- s
				}()
				n, err := w.ReadFrom(src)
				w.Close()
				if err != nil || n != int64(len(want)) {
					t.Fatalf("ReadFrom = %d, %v; want %d", n, err, len(want))
				}
				if lr, ok := src.(*io.LimitedReader); ok && lr.N != 0 {
					t.Errorf("N = %d after the copy", lr.N)
				}
				if <-got != sha256.Sum256(want) {
					t.Error("bytes differ")
				}
			})
		}
	}
}

// TestWriteToDestinations: PipeReader.WriteTo into each kind of
// destination, byte-exact; an O_APPEND file and a bytes.Buffer fall back
// to userspace.
func TestWriteToDestinations(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(2<<20 + 5)
	type dest struct {
		w      io.Writer
		result func() []byte
	}
	dests := map[string]func(t *testing.T) dest{
		"file": func(t *testing.T) dest {
			f, _ := os.CreateTemp(t.TempDir(), "f")
			t.Cleanup(func() { f.Close() })
			return dest{f, func() []byte { b, _ := os.ReadFile(f.Name()); return b }}
		},
		"append file": func(t *testing.T) dest {
			p := filepath.Join(t.TempDir(), "f")
			f, _ := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
			t.Cleanup(func() { f.Close() })
			return dest{f, func() []byte { b, _ := os.ReadFile(p); return b }}
		},
		"pipe": func(t *testing.T) dest {
			r, w := ptNewPipe(t)
			ch := make(chan []byte, 1)
			go func() { b, _ := io.ReadAll(r); ch <- b }()
			return dest{w, func() []byte { w.Close(); return <-ch }}
		},
		"tcp": func(t *testing.T) dest {
			a, b := ptConnPair(t, "tcp")
			ch := make(chan []byte, 1)
			go func() { x, _ := io.ReadAll(b); ch <- x }()
			return dest{a, func() []byte { a.Close(); return <-ch }}
		},
		"unix": func(t *testing.T) dest {
			a, b := ptConnPair(t, "unix")
			ch := make(chan []byte, 1)
			go func() { x, _ := io.ReadAll(b); ch <- x }()
			return dest{a, func() []byte { a.Close(); return <-ch }}
		},
		"buffer": func(t *testing.T) dest {
			var b bytes.Buffer
			return dest{&b, b.Bytes}
		},
	}
	for name, mk := range dests {
		t.Run(name, func(t *testing.T) {
			d := mk(t)
			r, w := ptNewPipe(t)
			go func() { w.Write(data); w.Close() }()
			n, err := r.WriteTo(d.w)
			if err != nil || n != int64(len(data)) {
				t.Fatalf("WriteTo = %d, %v", n, err)
			}
			if got := d.result(); !bytes.Equal(got, data) {
				t.Fatalf("got %d bytes, want %d", len(got), len(data))
			}
		})
	}
	t.Run("/dev/null", func(t *testing.T) {
		null, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		defer null.Close()
		r, w := ptNewPipe(t)
		go func() { w.Write(data); w.Close() }()
		if n, err := r.WriteTo(null); err != nil || n != int64(len(data)) {
			t.Fatalf("WriteTo = %d, %v", n, err)
		}
	})
}

// TestReadFromReaderGone: the pipe's reader closed: EPIPE, wrapped.
func TestReadFromReaderGone(t *testing.T) {
	fdtest.Check(t)
	r, w := ptNewPipe(t)
	r.Close()
	f, _ := os.CreateTemp(t.TempDir(), "f")
	defer f.Close()
	f.Write(fdtest.Random(100))
	f.Seek(0, io.SeekStart)
	if _, err := w.ReadFrom(f); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("ReadFrom = %v, want EPIPE", err)
	}
}

// TestReadFromCloseMidCopy: closing the pipe's reader end while ReadFrom
// waits for room ends it with an error.
func TestReadFromCloseMidCopy(t *testing.T) {
	fdtest.Check(t)
	r, w := ptNewPipe(t)
	a, b := ptConnPair(t, "tcp")
	go b.Write(fdtest.Random(1 << 20))
	errc := make(chan error, 1)
	go func() { _, err := w.ReadFrom(a); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	r.Close() // nobody drained: ReadFrom waits for room; now EPIPE
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("nil error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFrom did not end")
	}
	w.Close()
}
