//go:build !pipes_portable

package pipes

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"testing"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestIsolationStalledFileSystem: copies from a file whose file system
// does not answer its reads (a network or FUSE file system whose server
// went silent) must not hold up copies from other files. On the io_uring
// engine the reads that miss the page cache go through the ring, whose
// worker threads are capped (WithIOWQMaxWorkers): one stalled read per
// worker would leave every other copy's cold reads waiting behind them.
func TestIsolationStalledFileSystem(t *testing.T) {
	for _, cfg := range []isoConfig{
		{name: "default"},
		{name: "ring", opts: []Option{WithRingMinConcurrency(0)}},
		{name: "ring,workers=1", opts: []Option{WithRingMinConcurrency(0), WithIOWQMaxWorkers(1)}},
	} {
		for _, dst := range []string{"pipe", "tcp"} {
			t.Run(cfg.name+"/"+dst, func(t *testing.T) {
				fdtest.Check(t)
				fs := newStallFS(t, 64<<20) // a 4 MiB section for each copy
				e, err := NewEngine(cfg.opts...)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { e.Close() })
				var hostile []*Future
				for i := range DefaultIOWQMaxWorkers + 1 {
					src, err := os.Open(fs.path)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { src.Close() })
					// Pages of their own: one read each.
					if _, err := src.Seek(int64(i)*(4<<20), io.SeekStart); err != nil {
						t.Fatal(err)
					}
					var w io.WriteCloser
					var r io.ReadCloser
					if dst == "pipe" {
						r, w, err = os.Pipe()
						if err != nil {
							t.Fatal(err)
						}
					} else {
						r, w = tcpPair(t)
					}
					t.Cleanup(func() { r.Close(); w.Close() })
					go io.Copy(io.Discard, r)
					hostile = append(hostile, e.CopyAsync(context.Background(), w, src))
				}
				t.Cleanup(fs.Release) // before the files are closed
				isoUntil(t, func() bool { return len(fs.reads) > 0 }, "the stalled reads")

				data := fdtest.Random(8 << 20)
				var runs []*Future
				var checks []func(*testing.T)
				for _, kind := range []string{"pipe", "tcp"} {
					src := fileSource(t, data)
					t.Cleanup(src.close)
					var s sink
					if kind == "pipe" {
						s = sinkKinds[1].make(t)
					} else {
						s = sinkKinds[3].make(t)
					}
					runs = append(runs, e.CopyAsync(context.Background(), s.w, src.r))
					checks = append(checks, func(t *testing.T) {
						if n, sum := s.finish(); n != int64(len(data)) || sum != sha256.Sum256(data) {
							t.Errorf("file->%s: destination got %d bytes, want %d", kind, n, len(data))
						}
					})
				}
				for i, f := range runs {
					isoWait(t, f.Done(), "healthy copy")
					if n, err := f.Wait(); n != int64(len(data)) || err != nil {
						t.Errorf("healthy copy %d = (%d, %v), want (%d, nil)", i, n, err, len(data))
					}
					checks[i](t)
				}
				for i, f := range hostile {
					select {
					case <-f.Done():
						n, err := f.Wait()
						t.Errorf("copy %d from the stalled file ended before its reads were answered: (%d, %v)", i, n, err)
					default:
					}
				}
				fs.Release()
				done := make(chan struct{})
				go func() { e.Close(); close(done) }()
				isoWait(t, done, "Close")
				for _, f := range hostile {
					isoWait(t, f.Done(), "copy from the stalled file")
				}
			})
		}
	}
}
