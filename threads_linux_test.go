//go:build !pipes_portable

package pipes

import (
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// osThreads returns the process's OS threads (iou-wrk workers included),
// from /proc/self/status.
func osThreads(tb testing.TB) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatal("no Threads line in /proc/self/status")
	return 0
}

// coldStart starts one copy from src to dst and returns its wait.
type coldStart func(dst io.Writer, src *os.File) (wait func() (int64, error))

// engineCopy starts copies with e.CopyAsync.
func engineCopy(e *Engine) coldStart {
	return func(dst io.Writer, src *os.File) func() (int64, error) {
		return e.CopyAsync(context.Background(), dst, src).Wait
	}
}

// ioCopy starts copies with io.Copy, one goroutine each.
func ioCopy(dst io.Writer, src *os.File) func() (int64, error) {
	var n int64
	var err error
	done := make(chan struct{})
	go func() {
		n, err = io.Copy(dst, src)
		close(done)
	}()
	return func() (int64, error) { <-done; return n, err }
}

// coldCopies runs n concurrent copies of n cold files (written, then
// evicted with POSIX_FADV_DONTNEED) of size bytes each to unix sockets
// read by one goroutine each, checks every byte count, and returns the
// peak OS thread count sampled while they ran. It skips where the files
// stay in the page cache (tmpfs).
func coldCopies(tb testing.TB, start coldStart, n, size int) (peak int) {
	data := fdtest.Random(size)
	files := make([]*os.File, n)
	for i := range files {
		f := fdtest.TempFile(tb, data)
		defer f.Close() // now: a benchmark calls this once per iteration
		fdtest.Evict(tb, f)
		if i == 0 && fdtest.CachedPages(tb, f, int64(size)) > 0 {
			tb.Skip("the page cache cannot be dropped for files in TMPDIR (tmpfs?)")
		}
		files[i] = f
	}
	stop := make(chan struct{})
	sampled := make(chan int)
	go func() {
		peak := 0
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			peak = max(peak, osThreads(tb))
			select {
			case <-stop:
				sampled <- peak
				return
			case <-tick.C:
			}
		}
	}()
	var wg sync.WaitGroup
	waits := make([]func() (int64, error), n)
	dsts := make([]io.Closer, n)
	for i, f := range files {
		a, b := unixPair(tb)
		defer b.Close()
		wg.Go(func() {
			if m, err := io.Copy(io.Discard, b); m != int64(size) || err != nil {
				tb.Errorf("destination %d got (%d, %v), want %d bytes", i, m, err, size)
			}
		})
		dsts[i] = a
		waits[i] = start(a, f)
	}
	for i, wait := range waits {
		if m, err := wait(); m != int64(size) || err != nil {
			tb.Errorf("copy %d = (%d, %v), want %d bytes", i, m, err, size)
		}
		dsts[i].Close()
	}
	close(stop)
	peak = <-sampled
	wg.Wait()
	return peak
}

// TestColdCopiesBoundThreads runs 256 concurrent copies of cold files to
// sockets on an io_uring engine and checks that the process's OS threads
// stay bounded by the io-wq cap (bounded and unbounded workers), the
// threads the runtime had before, and a wide margin for the runtime's own
// (a thread per blocked copy would be 256). Skipped where io_uring is
// refused or the files cannot be made cold.
func TestColdCopiesBoundThreads(t *testing.T) {
	fdtest.Check(t)
	const n, size, workers = 256, 256 << 10, 4
	raiseNoFile(t, 4*n+1000)
	e := newTestEngine(t, WithIOWQMaxWorkers(workers))
	if e.Backend() != BackendIOUring {
		t.Skipf("backend is %s", e.Backend())
	}
	before := osThreads(t)
	peak := coldCopies(t, engineCopy(e), n, size)
	limit := before + 2*workers + 48
	t.Logf("OS threads: %d before, %d at peak during %d cold copies (limit %d)", before, peak, n, limit)
	if peak > limit {
		t.Fatalf("%d OS threads at peak during %d cold copies, want at most %d (%d before + 2x%d io-wq workers + 48)", peak, n, limit, before, workers)
	}
}

// BenchmarkColdCopiesThreads reports the peak OS threads (threads/op) of
// 256 concurrent copies of cold 256 KiB files to sockets, on the default
// engine and with io.Copy, one goroutine per copy.
func BenchmarkColdCopiesThreads(b *testing.B) {
	const n, size = 256, 256 << 10
	e := newTestEngine(b)
	for _, bc := range []struct {
		name  string
		start coldStart
	}{{"pipes/" + string(e.Backend()), engineCopy(e)}, {"io.Copy", ioCopy}} {
		b.Run(bc.name, func(b *testing.B) {
			peak := 0
			for b.Loop() {
				peak = max(peak, coldCopies(b, bc.start, n, size))
			}
			b.ReportMetric(float64(peak), "threads")
		})
	}
}

// TestRingUnprivileged runs the tests of the ring's pinned descriptors
// (registered-file slots, or duplicates where the table is refused) and
// of its thread bound again as uid 65534: a registered-file table is
// bounded by RLIMIT_NOFILE and its pipes by the user's pipe quota.
func TestRingUnprivileged(t *testing.T) {
	skipUnlessRerunner(t, "the ring tests")
	runUnprivileged(t, "^(TestCopyFdReuse|TestCopyCloseEnds|TestCopyWriteDeadline|TestStatsCountRingBatches|TestColdCopiesBoundThreads|TestManyRingChains)$")
}
