//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

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
			fanOutToSinks(t, e, src, data)
		})
	}
}

// fanOutToSinks fans src out with e to a pipe, a unix socket and a
// writer (advSink), and checks that each got all of data, src's bytes.
func fanOutToSinks(t *testing.T, e *Engine, src io.Reader, data []byte) {
	t.Helper()
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
}
