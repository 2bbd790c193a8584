//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestAdv13bDirectSourceNotWarmed copies a cold file opened O_DIRECT to
// a socket, and fans it out, on an engine that warms every file copy.
// Its reads bypass the page cache, so a chunk the ring reads in is not
// there for the copy: the Warmer read each chunk from the disk into its
// scratch buffer (the page cache still missed it after the READ into
// the guard) and the copy read it again, every byte read twice, and
// Stats.Warmed counted chunks never warmed. Such a file has no Warmer.
func TestAdv13bDirectSourceNotWarmed(t *testing.T) {
	fdtest.Check(t)
	const size = 4 << 20
	data := fdtest.Random(size)
	path := filepath.Join(t.TempDir(), "direct")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"Copy", "FanOut"} {
		t.Run(mode, func(t *testing.T) {
			f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
			if err != nil {
				t.Skipf("O_DIRECT: %v", err)
			}
			defer f.Close()
			fdtest.Evict(t, f)
			if n := fdtest.CachedPages(t, f, size); n > 0 {
				t.Skipf("%d pages still in the page cache after POSIX_FADV_DONTNEED (tmpfs?)", n)
			}
			e := newTestEngine(t, WithRingMinConcurrency(0))
			a, b := fdtest.SocketPair(t, syscall.SOCK_STREAM)
			defer b.Close()
			got := make(chan []byte)
			go func() { d, _ := io.ReadAll(b); got <- d }()
			var n int64
			if mode == "Copy" {
				n, err = e.Copy(a, f)
			} else {
				res := e.FanOut(context.Background(), f, []io.Writer{a})
				n, err = res[0].Written, res[0].Err
			}
			a.Close()
			if d := <-got; n != size || err != nil || !bytes.Equal(d, data) {
				t.Fatalf("%s = (%d, %v), %d bytes delivered; want (%d, nil) and the data", mode, n, err, len(d), size)
			}
			if st := e.Stats(); st.Warmed != 0 {
				t.Errorf("Stats.Warmed = %d for a file whose reads bypass the page cache; want 0", st.Warmed)
			}
		})
	}
}

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
