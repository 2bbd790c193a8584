//go:build !pipes_portable

package pipes

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

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
