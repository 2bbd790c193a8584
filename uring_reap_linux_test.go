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
)

// reapModes are the two ways of reaping the ring compared in
// docs/design.md: an eventfd read through the Go netpoller (the engine's)
// and a locked thread blocked in io_uring_enter.
var reapModes = []struct {
	name string
	opt  Option
}{
	{"netpoller", func(*config) {}},
	{"thread", func(c *config) { c.reaperThread = true }},
}

// TestReaperThread runs ring copies, concurrent and cancelled, with the
// locked-thread reaper, which the benchmarks compare with the default.
func TestReaperThread(t *testing.T) {
	e := newTestEngine(t, WithRingMinConcurrency(0), reapModes[1].opt)
	if e.Backend() != BackendIOUring {
		t.Skipf("backend is %s", e.Backend())
	}
	data := randomData(3<<20 + 5)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := fileSource(t, data)
			defer src.close()
			a, b := unixPair(t)
			got := make(chan []byte, 1)
			go func() { all, _ := io.ReadAll(b); got <- all; b.Close() }()
			var n int64
			var err error
			if i%2 == 0 {
				n, err = e.Copy(a, src.r)
			} else {
				n, err = e.CopyAsync(context.Background(), a, src.r).Wait()
			}
			a.Close()
			if all := <-got; n != int64(len(data)) || err != nil || !bytes.Equal(all, data) {
				t.Errorf("copy %d = (%d, %v), destination got %d bytes", i, n, err, len(all))
			}
		}()
	}
	wg.Wait()
	if st := e.Stats(); st.Ring != 32 || st.SQEs == 0 {
		t.Fatalf("stats %+v: want 32 ring copies", st)
	}
}

// BenchmarkRingReap compares the reaping alternatives on ring copies of a
// hot file into unix sockets (linked chains: files above the pipe size):
// one 2 MiB copy at a time (round trips), and 64 concurrent ones.
func BenchmarkRingReap(b *testing.B) {
	dir := b.TempDir()
	for _, mode := range reapModes {
		for _, bc := range []struct {
			copies, size int
		}{{1, 2 << 20}, {64, 2 << 20}} {
			b.Run(fmt.Sprintf("%s/copies=%d/size=%d", mode.name, bc.copies, bc.size), func(b *testing.B) {
				e, err := NewEngine(WithRingMinConcurrency(0), mode.opt)
				if err != nil {
					b.Fatal(err)
				}
				defer e.Close()
				if e.Backend() != BackendIOUring {
					b.Skipf("backend is %s", e.Backend())
				}
				path := filepath.Join(dir, fmt.Sprint(bc.size))
				if err := os.WriteFile(path, randomData(bc.size), 0o600); err != nil {
					b.Fatal(err)
				}
				srcs := make([]*os.File, bc.copies)
				dsts := make([]io.Writer, bc.copies)
				for i := range srcs {
					if srcs[i], err = os.Open(path); err != nil {
						b.Fatal(err)
					}
					defer srcs[i].Close()
					a, r := unixPair(b)
					defer a.Close()
					defer r.Close()
					go io.Copy(io.Discard, r)
					dsts[i] = a
				}
				futures := make([]*Future, bc.copies)
				b.SetBytes(int64(bc.copies * bc.size))
				for b.Loop() {
					for i, f := range srcs {
						f.Seek(0, io.SeekStart)
						futures[i] = e.CopyAsync(context.Background(), dsts[i], f)
					}
					for _, f := range futures {
						if n, err := f.Wait(); n != int64(bc.size) || err != nil {
							b.Fatalf("copy = (%d, %v)", n, err)
						}
					}
				}
				st := e.Stats()
				b.ReportMetric(float64(st.Enters)/float64(b.N), "enters/op")
			})
		}
	}
}
