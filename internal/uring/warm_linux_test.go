package uring

import (
	"context"
	"io"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
	"github.com/pipes-go/pipes/splice"
)

// TestSmallCached: a small file wholly in the page cache needs no Warmer;
// one with a page out of it, an empty one and one over cachedChunk do.
func TestSmallCached(t *testing.T) {
	for _, c := range []struct {
		name   string
		size   int
		warm   bool // read it back into the page cache
		cached bool // want smallCached
	}{
		{"cached, one page", 100, true, true},
		{"cached, 64 KiB", 64 << 10, true, true},
		{"cold", 64 << 10, false, false},
		{"empty", 0, true, false},
		{"over cachedChunk", cachedChunk + 1, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := testFile(t, make([]byte, c.size))
			if c.warm {
				io.Copy(io.Discard, f)
			} else if n := fdtest.CachedPages(t, f, int64(c.size)); n > 0 {
				t.Skipf("%d pages still in the page cache after POSIX_FADV_DONTNEED (tmpfs?)", n)
			}
			if got := smallCached(File{Conn: rawConn(t, f), Size: int64(c.size)}); got != c.cached {
				t.Errorf("smallCached = %v; want %v", got, c.cached)
			}
		})
	}
}

// TestWarmerHoldsOneSlot: a Warmer pins its file once, at the first
// chunk it reads in, and holds the slot of a one-slot table across the
// chunks after it (another pin meanwhile gets a duplicate), until Close
// gives it back.
func TestWarmerHoldsOneSlot(t *testing.T) {
	fdtest.Check(t)
	pool := splice.NewPool(64<<10, 2)
	defer pool.Close()
	st := new(Counters)
	d, err := New(Config{Entries: 8, IOWQMaxWorkers: 2, Pool: pool, Closed: errTestClosed,
		Files: 1, WarmChunk: 256 << 10}, st)
	if err != nil {
		t.Skipf("io_uring refused: %v", err)
	}
	defer d.Close()
	if d.files.free == nil {
		t.Skip("the kernel refused a registered-file table")
	}
	const size = 4 << 20
	f := testFile(t, make([]byte, size))
	if n := fdtest.CachedPages(t, f, size); n > 0 {
		t.Skipf("%d pages still in the page cache after POSIX_FADV_DONTNEED (tmpfs?)", n)
	}
	w, err := d.NewWarmer(File{Conn: rawConn(t, f), Size: size})
	if err != nil || w == nil {
		t.Fatalf("NewWarmer = %v, %v", w, err)
	}
	takes := 0
	for left := size; left > 0; takes++ {
		n, err := w.Take(context.Background(), left)
		if err != nil {
			t.Fatal(err)
		}
		if w.pin == nil || !w.pin.fixed {
			t.Fatalf("after a chunk the Warmer holds %+v; want the slot", w.pin)
		}
		other, err := d.pin(rawConn(t, f))
		if err != nil {
			t.Fatal(err)
		}
		if other.fixed {
			t.Fatalf("another pin got the slot the Warmer holds")
		}
		d.unpin(other)
		left -= n
	}
	if st.Warms.Load() == 0 || takes < 2 {
		t.Fatalf("%d chunks granted, %d read in; want several chunks, one read in at least", takes, st.Warms.Load())
	}
	w.Close()
	p, err := d.pin(rawConn(t, f))
	if err != nil || !p.fixed {
		t.Fatalf("pin after Close = %+v, %v; want the slot back", p, err)
	}
	d.unpin(p)
}

// TestPageCached: ranges of a file in the page cache are cached, ranges
// of one out of it are not, and asking starts no read of them (the
// readahead a preadv2 probe would start on the caller's thread).
func TestPageCached(t *testing.T) {
	const size = 1 << 20
	for _, c := range []struct {
		name    string
		warm    bool
		off, n  int
		want    bool
		started bool // pages may come into the cache by asking
	}{
		{"cached, whole", true, 0, size, true, true},
		{"cached, one byte", true, 5000, 1, true, true},
		{"cached, last page", true, size - 4096, 4096, true, true},
		{"cold, whole", false, 0, size, false, false},
		{"cold, one page", false, 8192, 4096, false, false},
		{"cold, a middle range", false, 100000, 300000, false, false},
		{"cached, a range past the end", true, size - 8192, 1 << 20, true, true},
		{"cached, at the end", true, size, 4096, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := testFile(t, make([]byte, size))
			if c.warm {
				io.Copy(io.Discard, f)
			} else if n := fdtest.CachedPages(t, f, size); n > 0 {
				t.Skipf("%d pages still in the page cache after POSIX_FADV_DONTNEED (tmpfs?)", n)
			}
			if got := PageCached(int(f.Fd()), int64(c.off), c.n, size); got != c.want {
				t.Errorf("PageCached(%d, %d) = %v, want %v", c.off, c.n, got, c.want)
			}
			if n := fdtest.CachedPages(t, f, size); !c.started && n > 0 {
				t.Errorf("asking brought %d pages into the page cache", n)
			}
		})
	}
}

// TestChunkResidencyReading: a range whose pages the kernel is still
// reading in (readahead started by POSIX_FADV_WILLNEED just before) is
// Reading or, once read, Cached: never Missing, which would have the
// Warmer read it again. The test skips where the disk reads too fast to
// ever catch a page being read.
func TestChunkResidencyReading(t *testing.T) {
	const n = 64 << 10 // within any read_ahead_kb: WILLNEED reads it all
	f := testFile(t, fdtest.Random(n))
	fdNum := int(f.Fd())
	seen := map[Residency]int{}
	for range 50 {
		fdtest.Evict(t, f)
		if c := fdtest.CachedPages(t, f, n); c > 0 {
			t.Skipf("%d pages still in the page cache after POSIX_FADV_DONTNEED (tmpfs?)", c)
		}
		if err := unix.Fadvise(fdNum, 0, n, unix.FADV_WILLNEED); err != nil {
			t.Fatal(err)
		}
		// WILLNEED returns once every page is in the cache, locked
		// until its read completes.
		seen[ChunkResidency(fdNum, 0, n, n)]++
	}
	t.Logf("after WILLNEED: %d Reading, %d Cached, %d Missing", seen[Reading], seen[Cached], seen[Missing])
	if seen[Missing] > 0 {
		t.Fatalf("%d of 50 ranges with every page present were Missing", seen[Missing])
	}
	if seen[Reading] == 0 {
		t.Skip("no page was caught being read: the disk is too fast for this test")
	}
}
