//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Copies into and out of O_DIRECT files, which take only aligned lengths
// and bypass the page cache: the bytes a paced copy reads at once where
// its destination refuses to take them by splice, sources of a length
// the file refuses at their end, and a cold source on an engine that
// warms every file copy.

// TestAdv18PacedIntoDirectFile copies paced sources into an O_DIRECT
// file, which takes only aligned lengths. io.Copy's paced reads
// (RateLimitedReader) each read a whole buffer, so every write it makes
// is aligned and the copy succeeds; the engine's grants are as large
// as the bucket allows, and a grant's tail (a burst of an odd size) put
// in a pipe, and refused, must not be written alone: the copy must
// succeed as io.Copy's does, with the same bytes.
func TestAdv18PacedIntoDirectFile(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(2<<20 + 8192)
	srcs := []struct {
		name  string
		burst int
		make  func(t *testing.T, data []byte) (io.Reader, func() (int64, int64))
	}{
		// A pipe of a page takes a burst of 100000 bytes in 24 full
		// pages and a tail of 1696 bytes; the default pipe takes a
		// burst of 1 MiB + 1696 in a full pipe and the tail.
		{"file", 100000, func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
			return fileAt(t, fdtest.TempFile(t, data), 0, -1)
		}},
		{"file", 1<<20 + 1696, func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
			return fileAt(t, fdtest.TempFile(t, data), 0, -1)
		}},
		{"file/N=1MiB+64KiB", 100000, func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
			return fileAt(t, fdtest.TempFile(t, data), 0, 1<<20+64<<10)
		}},
		// A socket's pages are refused at once; the pipe's bytes,
		// topped up, are written with write(2).
		{"unix", 100000, func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
			return queuedUnix(t, data[:160<<10])
		}},
	}
	eachDirectDst(t, func(ec engineCase, e *Engine, dst adv8Dst, wrapped bool) {
		for _, src := range srcs {
			// The bucket starts full: each copy's first grant is
			// the whole burst, at a rate that refills it in 20 ms.
			paced := adv8Src{src.name, func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
				r, state := src.make(t, data)
				return RateLimit(r, NewLimiter(int64(src.burst)*50, src.burst)), state
			}}
			t.Run(fmt.Sprintf("%s/%s/burst=%d->%s", ec.name, src.name, src.burst, dst.name), func(t *testing.T) {
				want := adv8Run(t, paced, dst, data, ioCopyBuffers)
				if want.err != nil {
					t.Fatalf("io.Copy: %v", want.err)
				}
				got := adv8Run(t, paced, dst, data, e.Copy)
				if what := adv8Same(want, got); what != "" {
					t.Errorf("%s differs:\n  pipes   %v\n  io.Copy %v", what, got, want)
				}
			})
		}
	})
}

// ioCopyBuffers is io.Copy writing its buffers into w: an *os.File's
// ReadFrom would splice a socket's pages into an O_DIRECT file, which
// refuses them.
func ioCopyBuffers(w io.Writer, r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{w}, r)
}

// eachDirectDst calls f for each engine case, and an engine with
// one-page pipes, with an O_DIRECT file destination, as an *os.File
// and behind a wrapper (wrapped).
func eachDirectDst(t *testing.T, f func(ec engineCase, e *Engine, dst adv8Dst, wrapped bool)) {
	ecs := append(engineCases(t), engineCase{"pipe-size-1", []Option{WithPipeSize(1)}})
	for _, ec := range ecs {
		e := newTestEngine(t, ec.opts...)
		for _, conn := range []bool{false, true} {
			dst := adv8Dst{"o-direct", directFile(0, conn)}
			if conn {
				dst.name += "-conn"
			}
			f(ec, e, dst, conn)
		}
	}
}

// TestAdv18UnalignedIntoDirectFile copies sources whose length an
// O_DIRECT file refuses at their end into one, with io.Copy's buffer
// loop and with each engine: io.Copy writes 32 KiB buffers until the
// last, short one fails (EINVAL). Once the file refused its splices the
// engine goes on as io.Copy, and must have delivered the same bytes
// before the same error, not fewer in larger buffers (losing what it
// read of the source's last 64 KiB).
func TestAdv18UnalignedIntoDirectFile(t *testing.T) {
	fdtest.Check(t)
	fdtest.DirectRefusesUnaligned(t)
	data := fdtest.Random(2 << 20)
	var srcs []adv8Src
	for _, size := range []int{40000, 100000, 150000} {
		// A socket's pages are refused at once.
		srcs = append(srcs, adv8Src{fmt.Sprintf("unix/%d", size), func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
			return queuedUnix(t, data[:size])
		}})
	}
	for _, size := range []int{1<<20 + 40000, 1<<20 + 100000} {
		// A file's pages are taken but for the last, short one, in
		// a pipe of the tail's bytes (of the default size: a pipe of
		// a page moves the file in pages, each taken, and delivers
		// more than io.Copy's buffers before the tail).
		srcs = append(srcs, adv8Src{fmt.Sprintf("file/%d", size), func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
			return fileAt(t, fdtest.TempFile(t, data[:size]), 0, -1)
		}})
	}
	eachDirectDst(t, func(ec engineCase, e *Engine, dst adv8Dst, wrapped bool) {
		for _, s := range srcs {
			t.Run(fmt.Sprintf("%s/%s->%s", ec.name, s.name, dst.name), func(t *testing.T) {
				if strings.HasPrefix(s.name, "file") && (!wrapped || ec.name != "default") {
					// Between two *os.File the copy is io.Copy's
					// own; the ring and one-page pipes deliver
					// the file in other pieces.
					t.Skip("not the splice loop's pieces")
				}
				want := adv8Run(t, s, dst, data, ioCopyBuffers)
				if want.err == nil {
					t.Fatalf("io.Copy took a length the file should refuse: %v", want)
				}
				got := adv8Run(t, s, dst, data, e.Copy)
				if what := adv8Same(want, got); what != "" {
					t.Errorf("%s differs:\n  pipes   %v\n  io.Copy %v", what, got, want)
				}
			})
		}
	})
}

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
