package uring

import (
	"io"
	"testing"
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
			} else if PageCached(int(f.Fd()), 0, c.size) {
				t.Skip("the page cache cannot be dropped here (tmpfs?)")
			}
			if got := smallCached(File{Conn: rawConn(t, f), Size: int64(c.size)}); got != c.cached {
				t.Errorf("smallCached = %v; want %v", got, c.cached)
			}
		})
	}
}
