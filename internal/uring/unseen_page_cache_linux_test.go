package uring

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
	"github.com/pipes-go/pipes/splice"
)

// The Warmer and the ring's reads on files whose pages cachestat(2)
// never counts.

// TestWarmerUnseenPageCache: a file whose pages cachestat(2) never
// counts, however often it is read, gets no Warmer: every chunk of it
// would be found Missing, read into the guard, found still missing and
// read again through the scratch buffer (shortReadahead), for good, a
// cold file's price paid by a file read from memory. Such are a file on
// overlayfs (the pages are the backing file's; preadv2 RWF_NOWAIT
// answers EOPNOTSUPP there too), a sysfs or procfs file (no page cache
// at all), and a tmpfs file (its holes are read from the zero page and
// never enter the page cache; its other pages are in memory). A cold
// file on the test's own file system still gets one, as the control.
func TestWarmerUnseenPageCache(t *testing.T) {
	const size = 4<<20 + 4096 // over cachedChunk: cachedCopy says nothing
	type warmerCase struct {
		name string
		open func(t *testing.T) *os.File
		want bool // a Warmer
	}
	cases := []warmerCase{{"cold file", func(t *testing.T) *os.File {
		f := testFile(t, fdtest.Random(size))
		skipUnlessMayRead(t, f)
		if n := fdtest.CachedPages(t, f, size); n > 0 {
			t.Skipf("%d pages still in the page cache after POSIX_FADV_DONTNEED (tmpfs?)", n)
		}
		return f
	}, true}}
	for _, u := range unseenFiles(size) {
		cases = append(cases, warmerCase{u.name, u.open, false})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, st := newTestDriverWith(t, 2, 1, DefaultWarmChunk)
			f := c.open(t)
			var fst unix.Stat_t
			if err := unix.Fstat(int(f.Fd()), &fst); err != nil {
				t.Fatal(err)
			}
			w, err := d.NewWarmer(File{Conn: rawConn(t, f), Size: fst.Size, Dev: uint64(fst.Dev)}, -1)
			if err != nil {
				t.Fatal(err)
			}
			if w == nil {
				if c.want {
					t.Fatal("no Warmer")
				}
				return
			}
			defer w.Close()
			for left := fst.Size; left > 0; {
				n, err := w.Take(context.Background(), int(left))
				if err != nil {
					t.Fatal(err)
				}
				left -= int64(n)
			}
			if !c.want {
				t.Errorf("a Warmer, which read %d chunks of %d bytes in (mode %d at the end); want none", st.Warms.Load(), fst.Size, w.mode)
			}
		})
	}
}

// unseenFile opens a file whose pages cachestat(2) does not count.
type unseenFile struct {
	name string
	open func(t *testing.T) *os.File
}

// unseenFiles returns openers of files whose pages cachestat(2) never
// counts, however often they are read (uncountedType); each skips the test
// where it cannot make its file. size is the size of the files it
// writes.
func unseenFiles(size int) []unseenFile {
	return []unseenFile{
		{"overlayfs, read whole", func(t *testing.T) *os.File {
			f := openAdv21(t, filepath.Join(fdtest.Overlay(t, fdtest.Random(size)), "data"))
			io.Copy(io.Discard, f)
			f.Seek(0, io.SeekStart)
			return f
		}},
		{"sysfs", func(t *testing.T) *os.File {
			return openAdv21(t, "/sys/kernel/btf/vmlinux")
		}},
		{"procfs", func(t *testing.T) *os.File {
			return openAdv21(t, "/proc/config.gz")
		}},
		{"tmpfs, a hole", func(t *testing.T) *os.File {
			f := openAdv21(t, fdtest.SparseTmpfsFile(t, int64(size)))
			io.Copy(io.Discard, f)
			f.Seek(0, io.SeekStart)
			return f
		}},
	}
}

// TestCopyReadsUnseenPageCache: the ring's reads do not take a copy of a
// file whose pages cachestat(2) does not count (MayRead): each of its
// rounds would look missing and go to an io-wq worker, however hot the
// file. CopyReads hands it back, with nothing moved, to the splice loop.
func TestCopyReadsUnseenPageCache(t *testing.T) {
	for _, u := range unseenFiles(1 << 20) {
		t.Run(u.name, func(t *testing.T) {
			d, st := newTestDriver(t)
			f := u.open(t)
			var fst unix.Stat_t
			if err := unix.Fstat(int(f.Fd()), &fst); err != nil {
				t.Fatal(err)
			}
			r, w := testPipe(t)
			go io.Copy(io.Discard, r)
			n, handled, err := d.CopyReads(context.Background(), &splice.End{Conn: rawConn(t, w), Pipe: true}, File{Conn: rawConn(t, f), Size: fst.Size}, -1, nil)
			if handled || n != 0 || err != nil || st.SQEs.Load() != 0 {
				t.Errorf("CopyReads = (%d, %v, %v) with %d SQEs; want (0, false, nil), none", n, handled, err, st.SQEs.Load())
			}
		})
	}
}

// openAdv21 opens path for reading, skipping the test where it cannot;
// the file is closed when the test ends.
func openAdv21(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// skipUnlessMayRead skips the test where f is on a file system the
// ring does not read and that gets no Warmer (MayRead): the test's
// temporary directory on tmpfs or overlayfs, say.
func skipUnlessMayRead(t *testing.T, f *os.File) {
	t.Helper()
	if !MayRead(rawConn(t, f)) {
		t.Skip("the test's files are on a file system the ring does not read (tmpfs, overlayfs?)")
	}
}
