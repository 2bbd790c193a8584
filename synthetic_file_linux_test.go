//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fanout"
	"github.com/pipes-go/pipes/internal/fdtest"
)

// fopenNonseekable is FUSE's FOPEN_NONSEEKABLE (linux/fuse.h): the
// kernel opens the file with nonseekable_open, and pread(2) and lseek(2)
// of it fail with ESPIPE.
const fopenNonseekable = 1 << 2

// TestReview26NonseekableSyntheticFile is TestAdv24SyntheticFileSource
// and TestAdv24SyntheticFileFanOut for a file that also cannot seek (a
// FUSE file opened FOPEN_DIRECT_IO|FOPEN_NONSEEKABLE whose size is
// reported as 0): splice(2) and sendfile(2) find it empty, read(2) reads
// its bytes, and the pread(2) that asks read(2) fails (ESPIPE). The copy
// must not take that for the file's end: it delivered nothing where
// io.Copy's read(2) loop delivers every byte.
func TestReview26NonseekableSyntheticFile(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(70000 + 3)
	open := func(t *testing.T) *os.File {
		fs := newSyntheticFS(t, data, func(fs *stallFS) { fs.openFlags = fopenNonseekable })
		f, err := os.Open(fs.path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		if _, err := f.Seek(0, io.SeekCurrent); err == nil {
			t.Skip("the kernel made the file seekable")
		}
		return f
	}
	for _, ec := range adv24Engines(t) {
		e := newTestEngine(t, ec.opts...)
		for _, sk := range advSinks {
			t.Run(fmt.Sprintf("%s/Copy->%s", ec.name, sk), func(t *testing.T) {
				f := open(t)
				w, finish := advSink(t, sk)
				var n int64
				var err error
				fdtest.Within(t, 20*time.Second, func() { n, err = e.Copy(w, f) })
				got := finish()
				if n != int64(len(data)) || err != nil || !bytes.Equal(got, data) {
					t.Errorf("Copy = (%d, %v), destination got %d bytes; want (%d, nil) and the file's", n, err, len(got), len(data))
				}
			})
		}
		t.Run(ec.name+"/FanOut", func(t *testing.T) {
			f := open(t)
			fanOutToSinks(t, e, f, data)
		})
	}
}

// goexitReaderFrom is goexitLater with a ReadFrom, as io.Copy's buffer
// loop into its Write: a relay direction into it is handed to it (a
// *bufio.Writer's, a *net.TCPConn's fallback).
type goexitReaderFrom struct{ goexitLater }

func (g goexitReaderFrom) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{g.goexitLater}, r)
}

// TestReview26RelayGoexitReadFromCounts is TestReview15RelayGoexitCounts
// with a destination that has a ReadFrom (kept by meteredReaderFrom since
// 9d001f9): its Write calls runtime.Goexit once it has taken a buffer.
// aToB must be what reached b, as RelayWith promises; it was what the
// ReadFrom had read, a buffer more than b took.
func TestReview26RelayGoexitReadFromCounts(t *testing.T) {
	e := newTestEngine(t)
	took := new(atomic.Int64)
	a := struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(make([]byte, 1<<20)), io.Discard}
	b := goexitReaderFrom{goexitLater{limit: 1, took: took}}
	var aToB, bToA int64
	var err error
	fdtest.Within(t, 20*time.Second, func() { aToB, bToA, err = e.RelayWith(context.Background(), a, b) })
	if !errors.Is(err, fanout.ErrGoexit) {
		t.Errorf("err = %v, want fanout.ErrGoexit", err)
	}
	if want := took.Load(); want == 0 || aToB != want || bToA != 0 {
		t.Errorf("aToB, bToA = %d, %d; want %d (what b took before the Goexit), 0", aToB, bToA, want)
	}
}

// TestReview26SyntheticFileReadFurtherOn copies the rest of a file whose
// size is reported as 0 (newSyntheticFS) after its first bytes were
// read, where the file system makes the file's contents anew at each
// read at offset 0 (lxcfs's /proc files do so for the descriptor, and
// serve reads further on from them). The copy must deliver the rest of
// the contents those first bytes came from, as io.Copy's reads from the
// offset do: the probe of read(2) (fd.ReadsMore) read at offset 0 first,
// which made new contents, and the copy delivered the rest of those.
func TestReview26SyntheticFileReadFurtherOn(t *testing.T) {
	fdtest.Check(t)
	const size, head = 70000 + 3, 5
	for _, ec := range adv24Engines(t) {
		e := newTestEngine(t, ec.opts...)
		for _, sk := range []string{"pipe", "unix", "writer", "fanout"} {
			t.Run(ec.name+"/"+sk, func(t *testing.T) {
				gen := byte('A' - 1)
				fs := newSyntheticFS(t, []byte{}, func(fs *stallFS) {
					fs.regen = func() []byte {
						gen++
						return bytes.Repeat([]byte{gen}, size)
					}
				})
				f, err := os.Open(fs.path)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				first := make([]byte, head)
				if _, err := io.ReadFull(f, first); err != nil {
					t.Fatal(err)
				}
				want := bytes.Repeat(first[:1], size-head)
				var w io.Writer
				var finish func() []byte
				if sk == "fanout" {
					w, finish = advSink(t, "pipe")
				} else {
					w, finish = advSink(t, sk)
				}
				var n int64
				fdtest.Within(t, 20*time.Second, func() {
					if sk == "fanout" {
						r := e.FanOut(context.Background(), f, []io.Writer{w})[0]
						n, err = r.Written, r.Err
						return
					}
					n, err = e.Copy(w, f)
				})
				got := finish()
				if n != int64(len(want)) || err != nil || !bytes.Equal(got, want) {
					gotGen := byte(0)
					if len(got) > 0 {
						gotGen = got[0]
					}
					t.Errorf("Copy = (%d, %v), destination got %d bytes of contents %q; want (%d, nil) of contents %q",
						n, err, len(got), gotGen, len(want), first[0])
				}
			})
		}
	}
}

// TestReview26SyntheticFileAfterBufferRound copies a file whose size is
// reported as 0 (a FUSE file of direct I/O, newSyntheticFS) into a file
// the engine splices into (connFile: the pipe loop), on an engine of one
// pool pipe that another copy holds when the copy starts: its first
// round goes through a userspace buffer, whose read(2) reads the file's
// bytes, and the pipe is free again for its second. That round's splice
// finds the file empty: the copy took that for the file's end, and
// returned the first buffer's bytes with no error, where io.Copy's
// read(2) loop reads the file whole.
func TestReview26SyntheticFileAfterBufferRound(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(200<<10 + 3)
	e := newTestEngine(t, WithBackend(BackendSplice), WithMaxPipes(1))
	held := e.sys.pool.TryGet()
	if held == nil {
		t.Fatal("the engine's pool has no pipe")
	}
	var once sync.Once
	put := func() { once.Do(func() { e.sys.pool.Put(held) }) }
	defer put()
	fs := newSyntheticFS(t, data, func(fs *stallFS) { fs.onRead = put })
	f, err := os.Open(fs.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var n int64
	fdtest.Within(t, 20*time.Second, func() { n, err = e.Copy(connFile{out}, f) })
	got, rerr := os.ReadFile(out.Name())
	if rerr != nil {
		t.Fatal(rerr)
	}
	if n != int64(len(data)) || err != nil || !bytes.Equal(got, data) {
		t.Errorf("Copy = (%d, %v), the file got %d bytes; want (%d, nil) and the file's", n, err, len(got), len(data))
	}
	if st := e.Stats(); st.PoolExhausted == 0 {
		t.Errorf("no round found the pool exhausted (Stats %+v): the test did not test", st)
	}
}
