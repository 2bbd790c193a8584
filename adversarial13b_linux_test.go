package pipes

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

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
