package uring

import (
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSmallCached: a small file wholly in the page cache needs no Warmer;
// one with a page out of it, an empty one and one over cachedChunk do.
// PageCached probes both ends of a range, once where it is one page.
func TestSmallCached(t *testing.T) {
	page := os.Getpagesize()
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
			} else if PageCached(int(f.Fd()), 0, c.size) {
				t.Skip("the page cache cannot be dropped here (tmpfs?)")
			}
			if got := smallCached(File{Conn: rawConn(t, f), Size: int64(c.size)}); got != c.cached {
				t.Errorf("smallCached = %v; want %v", got, c.cached)
			}
		})
	}
	// PageCached: a range whose last page is cold is not cached, unless it
	// is within the first page.
	f := testFile(t, make([]byte, 4*page))
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM) // no readahead
	f.ReadAt(make([]byte, page), 0)                   // the first page only
	if PageCached(int(f.Fd()), 3*int64(page), page) {
		t.Skip("the page cache cannot be dropped here (tmpfs?), or it read ahead")
	}
	for _, c := range []struct {
		off, n int
		want   bool
	}{
		{0, page, true},
		{0, 10, true},
		{0, page + 1, false},
		{0, 4 * page, false},
		{2 * page, page, false},
	} {
		if got := PageCached(int(f.Fd()), int64(c.off), c.n); got != c.want {
			t.Errorf("PageCached(off %d, n %d) = %v; want %v", c.off, c.n, got, c.want)
		}
	}
}
