//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestCopyOSFileToSocket: an *os.File source into a TCP socket is sent
// with sendfile(2) before it is classified. Whatever the file is, the
// copy must end as io.Copy's does: the same bytes, and an error where
// io.Copy has one (the same errno, or os.ErrClosed).
func TestCopyOSFileToSocket(t *testing.T) {
	dir := t.TempDir()
	data := fdtest.Random(100 << 10)
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, data, 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	open := func(path string, flag int) func(t *testing.T) io.Reader {
		return func(t *testing.T) io.Reader {
			f, err := os.OpenFile(path, flag, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return f
		}
	}
	cases := []struct {
		name string
		src  func(t *testing.T) io.Reader
	}{
		{"regular", open(regular, os.O_RDONLY)},
		{"empty", open(empty, os.O_RDONLY)},
		{"write-only", open(regular, os.O_WRONLY)},
		{"O_PATH", open(regular, unix.O_PATH)},
		{"directory", open(dir, os.O_RDONLY)},
		{"dev-zero, limited", func(t *testing.T) io.Reader {
			return &io.LimitedReader{R: open("/dev/zero", os.O_RDONLY)(t), N: 1 << 20}
		}},
		{"pipe", func(t *testing.T) io.Reader {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			go func() {
				w.Write(data)
				w.Close()
			}()
			return r
		}},
		{"socket as *os.File", func(t *testing.T) io.Reader {
			a, b := tcpPair(t)
			defer b.Close()
			f, err := b.File()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			go func() {
				a.Write(data)
				a.Close()
			}()
			return f
		}},
		{"closed", func(t *testing.T) io.Reader {
			f := open(regular, os.O_RDONLY)(t).(*os.File)
			f.Close()
			return f
		}},
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, c := range cases {
			t.Run(ec.name+"/"+c.name, func(t *testing.T) {
				want, wantErr := copyToTCP(t, io.Copy, c.src(t))
				got, err := copyToTCP(t, e.Copy, c.src(t))
				if !bytes.Equal(got, want) {
					t.Errorf("received %d bytes; io.Copy's peer %d", len(got), len(want))
				}
				if !sameError(err, wantErr) {
					t.Errorf("Copy error %v; io.Copy's %v", err, wantErr)
				}
			})
		}
	}
}

// copyToTCP copies src into one end of a new TCP connection and returns
// what the other end received, and the copy's error.
func copyToTCP(t *testing.T, copy func(io.Writer, io.Reader) (int64, error), src io.Reader) ([]byte, error) {
	dst, peer := tcpPair(t)
	return copyToPeer(t, copy, src, dst, peer)
}

// copyToPeer is copyToTCP into dst, a TCP connection whose other end is
// peer; it closes both. It does not end the test (no FailNow), so the
// test's own goroutines may call it.
func copyToPeer(t *testing.T, copy func(io.Writer, io.Reader) (int64, error), src io.Reader, dst, peer *net.TCPConn) ([]byte, error) {
	defer peer.Close()
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	n, err := copy(dst, src)
	dst.Close()
	b := <-got
	if int64(len(b)) != n {
		t.Errorf("copy returned %d, the peer received %d bytes", n, len(b))
	}
	return b, err
}

// sameError reports whether err is what io.Copy's want is: both nil, or
// both the same errno, or both os.ErrClosed.
func sameError(err, want error) bool {
	var errno syscall.Errno
	switch {
	case want == nil || err == nil:
		return want == nil && err == nil
	case errors.Is(want, os.ErrClosed):
		return errors.Is(err, os.ErrClosed)
	case errors.As(want, &errno):
		return errors.Is(err, errno)
	}
	return true
}
