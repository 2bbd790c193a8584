//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Adversarial tests, twenty-fourth round: a destination that takes none
// of the bytes it is given (a FUSE server that answers a write with 0
// bytes written), and a source file that splices as empty.

// adv24Engines are the engine cases of engineCases, and the splice
// backend.
func adv24Engines(t *testing.T) []engineCase {
	return append(engineCases(t), engineCase{"splice", []Option{WithBackend(BackendSplice)}})
}

// adv24Sources are the sources of adv8Sources named in names.
func adv24Sources(names ...string) []adv8Src {
	var srcs []adv8Src
	for _, s := range adv8Sources() {
		if slices.Contains(names, s.name) {
			srcs = append(srcs, s)
		}
	}
	return srcs
}

// zeroWriteDst is a destination file on a FUSE file system (direct I/O:
// each write goes to the server) whose server answers every write with
// the bytes it asked to write until it has taken after bytes in all, and
// then with 0 bytes written: write(2) returns 0, which an *os.File's
// Write reports as io.ErrUnexpectedEOF. conn hides the *os.File behind a
// connFile, so that the engine writes it from a regular file too.
func zeroWriteDst(after int64, conn bool) func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
	return func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
		var taken atomic.Int64
		fs := newWriteFS(t, func(size int) int {
			for {
				n := taken.Load()
				k := min(int64(size), max(after-n, 0))
				if taken.CompareAndSwap(n, n+k) {
					return int(k)
				}
			}
		})
		f, err := os.OpenFile(fs.path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		state := func() ([]byte, int64) { return nil, fileOff(f) }
		if conn {
			return connFile{f}, state
		}
		return f, state
	}
}

// TestAdv24ZeroWriteDest copies into a file whose write(2) returns 0
// once its FUSE server stops taking bytes (zeroWriteDst): io.Copy's
// buffer loop fails with io.ErrUnexpectedEOF, having counted the bytes
// the server took. A splice(2) into such a file returns 0 as well, which
// the copy took for the source's EOF: it returned nil with the rest of
// the bytes still in its source.
//
// The reference is io.Copy's buffer loop, with dst's ReaderFrom hidden:
// io.Copy into an *os.File from a socket splices (os.File.ReadFrom), and
// Go's splice, given 0 by the file, fills its pipe and waits for the
// socket forever.
func TestAdv24ZeroWriteDest(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(300<<10 + 1)
	// Not "pipe-limited": io.Copy reads up to a buffer from the pipe
	// that the file does not take, and lowers N by it; the copy leaves
	// the bytes in the pipe, and N as it was.
	srcs := adv24Sources("pipe", "unix", "file@0/N=-1", "file@4097/N=-1", "memfd@3/N=65537")
	var dsts []adv8Dst
	for _, conn := range []bool{false, true} {
		for _, after := range []int64{0, 100 << 10} {
			name := fmt.Sprintf("fuse-zero-after-%d", after)
			if conn {
				name += "-conn"
			}
			dsts = append(dsts, adv8Dst{name, zeroWriteDst(after, conn)})
		}
	}
	ref := func(w io.Writer, r io.Reader) (int64, error) { return io.Copy(struct{ io.Writer }{w}, r) }
	for _, ec := range adv24Engines(t) {
		e := newTestEngine(t, ec.opts...)
		for _, src := range srcs {
			for _, dst := range dsts {
				t.Run(fmt.Sprintf("%s/%s->%s", ec.name, src.name, dst.name), func(t *testing.T) {
					want := adv8Run(t, src, dst, data, ref)
					var got adv8After
					fdtest.Within(t, 20*time.Second, func() { got = adv8Run(t, src, dst, data, e.Copy) })
					if what := adv8Same(want, got); what != "" {
						t.Errorf("%s differs:\n  pipes   %v\n  io.Copy %v", what, got, want)
					}
					if got.err == nil && want.err != nil {
						t.Errorf("pipes reports success, io.Copy %v", want.err)
					}
					if errors.Is(got.err, io.ErrUnexpectedEOF) != errors.Is(want.err, io.ErrUnexpectedEOF) {
						t.Errorf("pipes' error %v, io.Copy's %v: not both io.ErrUnexpectedEOF", got.err, want.err)
					}
				})
			}
		}
	}
}

// TestAdv24SyntheticFileSource copies from a file whose size is
// reported as 0 while reads return its bytes: a FUSE file of direct I/O,
// as lxcfs serves /proc/meminfo and the like in containers
// (newSyntheticFS). read(2) returns the bytes; splice(2) and
// sendfile(2) read through the page cache, up to the size, and return
// 0: the copy took that for the file's end, and delivered nothing. Every
// copy must deliver what read(2) reads, as io.Copy does into a pipe, a
// file or a writer. (io.Copy sends nothing into a socket from it, by
// sendfile(2), but the file's bytes from it under an *io.LimitedReader
// into a unix socket: the bytes read(2) reads are the reference, as
// where io.Copy's splice loses an O_DIRECT file's, TestAdv8Descriptors.)
func TestAdv24SyntheticFileSource(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(70000 + 3)
	for _, ec := range adv24Engines(t) {
		e := newTestEngine(t, ec.opts...)
		for _, how := range []string{"plain", "limited", "offset"} {
			for _, sk := range advSinks {
				t.Run(fmt.Sprintf("%s/%s->%s", ec.name, how, sk), func(t *testing.T) {
					fs := newSyntheticFS(t, data)
					f, err := os.Open(fs.path)
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					var src io.Reader = f
					want := data
					switch how {
					case "limited":
						src, want = &io.LimitedReader{R: f, N: 40000}, data[:40000]
					case "offset":
						if _, err := f.Seek(5, io.SeekStart); err != nil {
							t.Fatal(err)
						}
						want = data[5:]
					}
					w, finish := advSink(t, sk)
					var n int64
					fdtest.Within(t, 20*time.Second, func() { n, err = e.Copy(w, src) })
					got := finish()
					if n != int64(len(want)) || err != nil || !bytes.Equal(got, want) {
						t.Errorf("Copy = (%d, %v), destination got %d bytes; want (%d, nil) and the file's", n, err, len(got), len(want))
					}
				})
			}
		}
	}
}

// TestAdv24SyntheticFileFanOut fans a file whose size is reported as 0
// while reads return its bytes (newSyntheticFS) out to a pipe, a unix
// socket and a writer: each must get the bytes read(2) reads, as from
// io.Copy's reads of it.
func TestAdv24SyntheticFileFanOut(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(70000 + 3)
	for _, ec := range adv24Engines(t) {
		t.Run(ec.name, func(t *testing.T) {
			e := newTestEngine(t, ec.opts...)
			fs := newSyntheticFS(t, data)
			src, err := os.Open(fs.path)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			sinks := []string{"pipe", "unix", "writer"}
			var ws []io.Writer
			var finishes []func() []byte
			for _, sk := range sinks {
				w, finish := advSink(t, sk)
				ws, finishes = append(ws, w), append(finishes, finish)
			}
			var res []Result
			fdtest.Within(t, 20*time.Second, func() { res = e.FanOut(context.Background(), src, ws) })
			for i, r := range res {
				got := finishes[i]()
				if r.Err != nil || r.Written != int64(len(data)) || !bytes.Equal(got, data) {
					t.Errorf("%s: (%d, %v), destination got %d bytes; want (%d, nil) and the file's", sinks[i], r.Written, r.Err, len(got), len(data))
				}
			}
		})
	}
}
