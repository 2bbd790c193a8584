//go:build !pipes_portable

package pipes

import (
	"fmt"
	"io"
	"testing"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Adversarial tests, eighteenth round: the bytes a paced copy reads at
// once where its destination refuses to take them by splice, and the
// probes and pools of the recent changes.

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
	// io.Copy writes its buffers into the file: an *os.File's ReadFrom
	// would splice a socket's pages into it, which it refuses.
	ref := func(w io.Writer, r io.Reader) (int64, error) { return io.Copy(struct{ io.Writer }{w}, r) }
	ecs := append(engineCases(t), engineCase{"pipe-size-1", []Option{WithPipeSize(1)}})
	for _, ec := range ecs {
		e := newTestEngine(t, ec.opts...)
		for _, src := range srcs {
			for _, conn := range []bool{false, true} {
				dst := adv8Dst{"o-direct", directFile(0, conn)}
				if conn {
					dst.name += "-conn"
				}
				// The bucket starts full: each copy's first grant is
				// the whole burst, at a rate that refills it in 20 ms.
				paced := adv8Src{src.name, func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
					r, state := src.make(t, data)
					return RateLimit(r, NewLimiter(int64(src.burst)*50, src.burst)), state
				}}
				t.Run(fmt.Sprintf("%s/%s/burst=%d->%s", ec.name, src.name, src.burst, dst.name), func(t *testing.T) {
					want := adv8Run(t, paced, dst, data, ref)
					if want.err != nil {
						t.Fatalf("io.Copy: %v", want.err)
					}
					got := adv8Run(t, paced, dst, data, e.Copy)
					if what := adv8Same(want, got); what != "" {
						t.Errorf("%s differs:\n  pipes   %v\n  io.Copy %v", what, got, want)
					}
				})
			}
		}
	}
}
