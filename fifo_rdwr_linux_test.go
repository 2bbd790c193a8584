//go:build !pipes_portable

package pipes

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestAdv13bReadWriteFifoEnds opens a fifo for reading and writing and
// closes one of the two ends: the other sees it as that of a pipe does,
// EOF (POLLHUP) once the writer is closed, EPIPE once the reader is.
// Both ends were O_RDWR descriptors, each a reader and a writer of the
// fifo: the reader never saw EOF, and writes went on into a fifo no one
// would read, then waited for room for ever.
func TestAdv13bReadWriteFifoEnds(t *testing.T) {
	fdtest.Check(t)
	opens := map[string]func(path string) (*PipeReader, *PipeWriter, error){
		"Create": Create,
		"OpenFifo": func(path string) (*PipeReader, *PipeWriter, error) {
			return OpenFifo(path, os.O_RDWR|os.O_CREATE, 0o600)
		},
		"AsyncOpenFifo": func(path string) (*PipeReader, *PipeWriter, error) {
			ch, err := AsyncOpenFifo(path, os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				return nil, nil, err
			}
			res := <-ch
			return res.R, res.W, res.Err
		},
	}
	for name, open := range opens {
		t.Run(name+"/writer closed", func(t *testing.T) {
			r, w, err := open(filepath.Join(t.TempDir(), "fifo"))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if _, err := w.Write([]byte("abc")); err != nil {
				t.Fatal(err)
			}
			w.Close()
			var ev int16
			rc, _ := r.SyscallConn()
			rc.Control(func(fd uintptr) { ev = fifoEvents(int(fd)) })
			if ev&unix.POLLHUP == 0 {
				t.Fatalf("reader's events %#x once the writer is closed; want POLLHUP", ev)
			}
			if b, err := io.ReadAll(r); string(b) != "abc" || err != nil {
				t.Errorf("ReadAll = %q, %v; want \"abc\", nil", b, err)
			}
		})
		t.Run(name+"/reader closed", func(t *testing.T) {
			r, w, err := open(filepath.Join(t.TempDir(), "fifo"))
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			r.Close()
			if _, err := w.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
				t.Errorf("Write once the reader is closed: %v; want EPIPE", err)
			}
		})
	}
}

// TestAdv14fReadWriteFifoReplaced replaces the fifo at the path with
// another one, which has a reader, between the two opens of an O_RDWR
// OpenFifo: the writer was opened by path, and so was an end of the new
// fifo, while the reader was one of the old: what was written to the
// writer never reached the reader, which saw EOF at once. The two ends
// are now of one fifo, or the open fails.
func TestAdv14fReadWriteFifoReplaced(t *testing.T) {
	fdtest.Check(t)
	for _, c := range []struct {
		name string
		open func(path string, readerOpened func()) (*PipeReader, *PipeWriter, error)
	}{
		{"OpenFifo", func(path string, readerOpened func()) (*PipeReader, *PipeWriter, error) {
			return openFifo(path, os.O_RDWR, 0, readerOpened)
		}},
		{"AsyncOpenFifo", func(path string, readerOpened func()) (*PipeReader, *PipeWriter, error) {
			ch, err := asyncOpenFifo(path, os.O_RDWR, 0, readerOpened)
			if err != nil {
				return nil, nil, err
			}
			res := <-ch
			return res.R, res.W, res.Err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "fifo")
			if err := unix.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
			var other *os.File // a reader of the fifo swapped in
			replaced := false
			replace := func() {
				replaced = true
				if err := os.Rename(path, filepath.Join(dir, "old")); err != nil {
					t.Error(err)
					return
				}
				if err := unix.Mkfifo(path, 0o600); err != nil {
					t.Error(err)
					return
				}
				var err error
				if other, err = os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0); err != nil {
					t.Error(err)
				}
			}
			t.Cleanup(func() {
				if other != nil {
					other.Close()
				}
			})
			r, w, err := c.open(path, replace)
			if !replaced {
				t.Fatal("the fifo was not replaced between the opens")
			}
			if err != nil {
				if r != nil || w != nil {
					t.Fatalf("ends %v, %v with error %v", r, w, err)
				}
				return // refused: fine
			}
			defer r.Close()
			if _, err := w.Write([]byte("abc")); err != nil {
				t.Fatal(err)
			}
			w.Close()
			if b, err := io.ReadAll(r); string(b) != "abc" || err != nil {
				t.Errorf("reader got %q, %v of what the writer wrote; want \"abc\", nil", b, err)
			}
		})
	}
}
