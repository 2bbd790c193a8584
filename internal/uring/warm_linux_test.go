package uring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestCachedCopy: a copy wholly in the page cache needs no Warmer where
// it is of a file of at most cachedChunk bytes, or of a section of less
// than gatedChunk of a larger one at the file's offset, and it counts as
// one chunk found there; one with a page out of the page cache, of an
// empty file, or of a longer section does, and the Warmer of a section
// starts at the offset cachedCopy read. A section that reads nothing
// needs none and counts none.
func TestCachedCopy(t *testing.T) {
	page := int64(os.Getpagesize())
	const large = cachedChunk + 1<<20
	const sec, secN = 2 << 20, 512 << 10 // a section of large
	for _, c := range []struct {
		name     string
		size     int
		off      int64   // the file's offset when the copy starts
		limit    int64   // the copy's (-1: to EOF)
		warm     []int64 // ranges read into the page cache, with no readahead: off, n, ...
		skip     bool    // want no Warmer
		counted  bool    // want a chunk counted as found in the page cache
		wantsOff bool    // the offset was read
	}{
		{"cached, one page", 100, 0, -1, []int64{0, 100}, true, true, false},
		{"cached, 64 KiB", 64 << 10, 0, -1, []int64{0, 64 << 10}, true, true, false},
		{"cached, 64 KiB at an offset", 64 << 10, 60 << 10, -1, []int64{0, 64 << 10}, true, true, false},
		{"cached, 64 KiB, a limit", 64 << 10, 0, 4096, []int64{0, 64 << 10}, true, true, false},
		{"cold", 64 << 10, 0, -1, nil, false, false, false},
		{"a page cold", 64 << 10, 0, -1, []int64{0, 64<<10 - page}, false, false, false},
		{"empty", 0, 0, -1, nil, false, false, false},
		{"empty, a limit", 0, 0, 4096, nil, false, false, false},
		{"over cachedChunk", cachedChunk + 1, 0, -1, []int64{0, cachedChunk + 1}, false, false, false},
		{"section cached", large, sec, secN, []int64{sec, secN}, true, true, true},
		{"section cold, the file around it cached", large, sec, secN, []int64{0, sec, sec + secN, large - sec - secN}, false, false, true},
		{"section's last page cold", large, sec, secN, []int64{sec, secN - page}, false, false, true},
		{"section past EOF", large, large + 4096, 64 << 10, nil, true, false, true},
		{"section of gatedChunk", large, sec, gatedChunk, []int64{sec, gatedChunk}, false, false, false},
		{"section of nothing", large, 1 << 20, 0, nil, true, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, st := newTestDriverWith(t, 2, 1, DefaultWarmChunk)
			f := testFile(t, make([]byte, c.size))
			if n := fdtest.CachedPages(t, f, int64(c.size)); n > 0 {
				t.Skipf("%d pages still in the page cache after POSIX_FADV_DONTNEED (tmpfs?)", n)
			}
			if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(c.warm); i += 2 {
				if _, err := io.Copy(io.Discard, io.NewSectionReader(f, c.warm[i], c.warm[i+1])); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := f.Seek(c.off, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			src := File{Conn: rawConn(t, f), Size: int64(c.size)}
			skip, off, err := d.cachedCopy(src, c.limit)
			if err != nil {
				t.Fatal(err)
			}
			wantOff := int64(-1)
			if c.wantsOff {
				wantOff = c.off
			}
			if skip != c.skip || off != wantOff {
				t.Errorf("cachedCopy = %v, offset %d; want %v, %d", skip, off, c.skip, wantOff)
			}
			if got := st.CachedReads.Load() == 1; got != c.counted {
				t.Errorf("a chunk counted as found in the page cache: %v; want %v", got, c.counted)
			}
			if c.skip || c.size == 0 || !MayRead(src.Conn) {
				return
			}
			w, err := d.NewWarmer(src, c.limit)
			if err != nil || w == nil {
				t.Fatalf("NewWarmer = %v, %v; want a Warmer", w, err)
			}
			defer w.Close()
			if w.off != c.off {
				t.Errorf("the Warmer starts at %d; want the file's offset %d", w.off, c.off)
			}
		})
	}
}

// TestWarmerHoldsOneSlot: a Warmer pins its file once, at the first
// chunk it reads in, and holds the slot of a one-slot table across the
// chunks after it (another pin meanwhile gets a duplicate), until Close
// gives it back.
func TestWarmerHoldsOneSlot(t *testing.T) {
	d, st := newTestDriverWith(t, 2, 1, 256<<10)
	if d.files.free == nil {
		t.Skip("the kernel refused a registered-file table")
	}
	const size = 4 << 20
	f := testFile(t, make([]byte, size))
	skipUnlessMayRead(t, f)
	if n := fdtest.CachedPages(t, f, size); n > 0 {
		t.Skipf("%d pages still in the page cache after POSIX_FADV_DONTNEED (tmpfs?)", n)
	}
	w, err := d.NewWarmer(File{Conn: rawConn(t, f), Size: size}, -1)
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
			skipUnlessMayRead(t, f) // PageCached is asked only there
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

// TestChunkResidencyPresent: a range whose pages the kernel is still
// reading in (readahead started by POSIX_FADV_WILLNEED just before) is
// Present, never Missing, which would have the Warmer read it again; and
// PageCached, which probes, tells it from a range that can be read now.
// Telling needs a disk slower than the probe: the test skips where no
// page is ever caught being read.
func TestChunkResidencyPresent(t *testing.T) {
	const n = 64 << 10 // within any read_ahead_kb: WILLNEED reads it all
	f := testFile(t, fdtest.Random(n))
	fdNum := int(f.Fd())
	if _, known := pagesPresent(fdNum, 0, n); !known {
		t.Skip("no cachestat(2): Linux 6.5")
	}
	seen := map[Residency]int{}
	reading := 0
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
		cached := PageCached(fdNum, 0, n, n)
		if !cached {
			reading++
		}
		// A page once readable stays so: a first page still being
		// read now means PageCached took a range being read for one
		// that can be read.
		var b [1]byte
		if _, err := unix.Preadv2(fdNum, [][]byte{b[:]}, 0, unix.RWF_NOWAIT); cached && err == unix.EAGAIN {
			t.Fatal("PageCached reported a range whose first page is still being read")
		}
	}
	t.Logf("after WILLNEED: %d Present, %d Cached, %d Missing; %d not readable yet", seen[Present], seen[Cached], seen[Missing], reading)
	if seen[Present] != 50 {
		t.Fatalf("ranges with every page in the page cache: %d of 50 Present", seen[Present])
	}
	if reading == 0 {
		t.Skip("no page was caught being read: the disk is too fast for this test")
	}
}

// TestWarmerModes: a Warmer over a file in the page cache probes and
// never asks the ring; over one out of it, it has the ring read the
// chunks in, and from the first one on it follows the kernel's readahead
// (behindReadahead) instead of probing.
func TestWarmerModes(t *testing.T) {
	const size = 8 << 20
	for _, c := range []struct {
		name      string
		warm      bool // read the file into the page cache first
		short     bool // drop each chunk read into the guard, as a device reading ahead less than it would leave it
		wantModes []warmMode
		wantRing  bool // SQEs submitted
	}{
		{"cached", true, false, []warmMode{hot}, false},
		// shortReadahead on a device that reads ahead less than a chunk.
		{"cold", false, false, []warmMode{behindReadahead, shortReadahead}, true},
		{"cold, short readahead", false, true, []warmMode{shortReadahead}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, st := newTestDriverWith(t, 2, 1, 256<<10)
			f := testFile(t, make([]byte, size))
			skipUnlessMayRead(t, f)
			if c.short {
				d.afterGuard = func(off, n int64) {
					unix.Fadvise(int(f.Fd()), off, n, unix.FADV_DONTNEED)
				}
			}
			if c.warm {
				io.Copy(io.Discard, f)
				f.Seek(0, io.SeekStart)
			} else if n := fdtest.CachedPages(t, f, size); n > 0 {
				t.Skipf("%d pages still in the page cache after POSIX_FADV_DONTNEED (tmpfs?)", n)
			}
			w := newWarmer(t, d, f, size)
			takeAll(t, w, f, size)
			if !slices.Contains(c.wantModes, w.mode) || (st.SQEs.Load() > 0) != c.wantRing {
				t.Errorf("mode %d after the file, %d SQEs, %d chunks read in; want a mode in %v, SQEs: %v",
					w.mode, st.SQEs.Load(), st.Warms.Load(), c.wantModes, c.wantRing)
			}
		})
	}
}

// TestWarmReadsIn: the ring's reads of a chunk, into the guard, copy no
// byte (the first read fails with EFAULT) and still leave every page of
// the chunk in the page cache and its last page readable, whether the
// chunk was out of the page cache (the chunk's read) or being read in
// (its first page's), for a chunk of one page (one read), and for one of
// several guards (a read of the first page of each).
func TestWarmReadsIn(t *testing.T) {
	const (
		size  = 1 << 20
		chunk = 64 << 10 // the guard's size: within any device's readahead (128 KiB by default)
		off   = 64 << 10
	)
	for _, c := range []struct {
		name     string
		willneed bool // start reading the chunk in first
		head, n  int64
		step     int64  // markStep's answer
		reads    uint64 // SQEs: the head, the first page of each further step, the last page
	}{
		{"missing chunk", false, chunk, chunk, chunk, 2},
		{"chunk being read", true, 4096, chunk, chunk, 2},
		{"one page", false, 100, 100, chunk, 1},
		// Where a readahead window may start, with its mark (startChunk).
		{"chunk of four guards", true, 4096, 4 * chunk, chunk, 5},
		// A device that reads ahead less than a guard (markStep).
		{"chunk of four windows", true, 4096, chunk, chunk / 4, 5},
		{"missing chunk of two windows", false, chunk, chunk, chunk / 2, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, st := newTestDriverWith(t, 2, 1, chunk)
			f := testFile(t, fdtest.Random(size))
			fdNum := int(f.Fd())
			if n := fdtest.CachedPages(t, f, size); n > 0 {
				t.Skipf("%d pages still in the page cache after POSIX_FADV_DONTNEED (tmpfs?)", n)
			}
			if c.willneed {
				if err := unix.Fadvise(fdNum, off, c.n, unix.FADV_WILLNEED); err != nil {
					t.Fatal(err)
				}
			}
			p, err := d.pin(rawConn(t, f))
			if err != nil {
				t.Fatal(err)
			}
			defer d.unpin(p)
			sqes := st.SQEs.Load() // the pin's FILES_UPDATE
			r, err := d.warm(context.Background(), p, off, c.head, c.n, c.step)
			if err != nil || r != -int32(unix.EFAULT) {
				t.Fatalf("warm = %d, %v; want -EFAULT (the guard takes no byte)", r, err)
			}
			if got := st.SQEs.Load() - sqes; got != c.reads {
				t.Errorf("%d reads; want %d", got, c.reads)
			}
			if !pagesReadIn(fdNum, off, c.n) {
				t.Errorf("a page of the %d bytes at %d is not in the page cache", c.n, off)
			}
			if last := off + c.n - 1; !readable(fdNum, last, 1) {
				t.Errorf("the chunk's last byte (%d) cannot be read without waiting", last)
			}
		})
	}
}

// TestWarmerGate: a call sending a chunk of at least gatedChunk that the
// Warmer found readable from the page cache takes one of the driver's
// CachedSenders turns, and waits while none is free until its context
// ends; chunks the ring read in, short chunks, the grant past the end of
// the file (the copy's last read, which finds EOF) and a driver with no
// bound go without one.
func TestWarmerGate(t *testing.T) {
	for _, c := range []struct {
		name    string
		size    int
		warm    bool
		senders int
		want    []bool // Enter's answer after each Take to the end; nil: false after every Take
	}{
		{"cached", 4<<20 + 100, true, 1, []bool{true, false}},
		{"cached, whole chunks", 8 << 20, true, 1, []bool{true, true}},
		{"cold", 4<<20 + 100, false, 1, nil},
		{"unbounded", 4<<20 + 100, true, 0, []bool{false, false}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for attempt := 1; ; attempt++ {
				got, warmed := warmerGate(t, c.size, c.warm, c.senders)
				if c.warm && warmed && attempt < 3 {
					// A page of the file read whole just before was
					// not in the page cache when probed (reclaim or
					// migration held it, under load): not the case
					// tested. A Warmer that misses cached pages
					// misses them every time.
					t.Logf("attempt %d: a cached chunk was read in again", attempt)
					continue
				}
				if (c.want == nil && slices.Contains(got, true)) || (c.want != nil && !slices.Equal(got, c.want)) {
					t.Errorf("turns taken chunk by chunk: %v, want %v", got, c.want)
				}
				return
			}
		})
	}
}

// warmerGate runs TestWarmerGate's case: a file of size bytes, read
// whole first if warm, granted chunk by chunk to the end by a Warmer of a
// driver with senders turns (0: no bound). It returns whether each grant
// took a turn, and whether the ring read any chunk in.
func warmerGate(t *testing.T, size int, warm bool, senders int) (got []bool, warmed bool) {
	d, st := newTestDriverWith(t, 2, 1, 1<<20)
	if senders > 0 {
		d.senders = newTurns(senders)
	}
	f := testFile(t, make([]byte, size))
	skipUnlessMayRead(t, f)
	if warm {
		io.Copy(io.Discard, f)
		f.Seek(0, io.SeekStart)
	} else if n := fdtest.CachedPages(t, f, int64(size)); n > 0 {
		t.Skipf("%d pages still in the page cache after POSIX_FADV_DONTNEED (tmpfs?)", n)
	}
	w, err := d.NewWarmer(File{Conn: rawConn(t, f), Size: int64(size)}, -1)
	if err != nil || w == nil {
		t.Fatalf("NewWarmer = %v, %v", w, err)
	}
	defer w.Close()
	enter := func() bool {
		entered, err := w.Enter(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if entered {
			// Every turn taken: another call waits until its
			// context ends.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if again, err := w.Enter(ctx); again || !errors.Is(err, context.Canceled) {
				t.Errorf("Enter with every turn taken = (%v, %v), want context.Canceled", again, err)
			}
			w.Leave()
		}
		return entered
	}
	for left := size; left > 0; {
		n, err := w.Take(context.Background(), left)
		if err != nil {
			t.Fatal(err)
		}
		left -= n
		got = append(got, enter())
	}
	if _, err := w.Take(context.Background(), 4<<20); err != nil {
		t.Fatal(err)
	}
	if enter() {
		t.Error("the grant past the end of the file took a turn")
	}
	if d.senders != nil && len(d.senders.tokens) != 0 {
		t.Errorf("%d turns not given back", len(d.senders.tokens))
	}
	return got, st.Warms.Load() > 0
}

// TestWarmerStartChunks: the first chunks a Warmer finds missing are
// read in as sendfile(2) starts reading a file (startChunk: 64 KiB,
// 64 KiB, then the 192 KiB up to the end of the kernel's first readahead
// window), where more than rampMin of the copy is left; every grant is
// in the page cache by the time it is made.
func TestWarmerStartChunks(t *testing.T) {
	for _, c := range []struct {
		size int
		want []int // the first grants of chunks found missing
	}{
		{8 << 20, []int{64 << 10, 64 << 10, 192 << 10}},
		// At most rampMin: whole guards.
		{rampMin, []int{DefaultWarmChunk}},
	} {
		t.Run(fmt.Sprint(c.size), func(t *testing.T) {
			testWarmerStartChunks(t, c.size, c.want)
		})
	}
}

func testWarmerStartChunks(t *testing.T, size int, want []int) {
	d, st := newTestDriverWith(t, 2, 1, DefaultWarmChunk)
	f := testFile(t, make([]byte, size))
	skipUnlessMayRead(t, f)
	if n := fdtest.CachedPages(t, f, int64(size)); n > 0 {
		t.Skipf("%d pages still in the page cache after POSIX_FADV_DONTNEED (tmpfs?)", n)
	}
	w, err := d.NewWarmer(File{Conn: rawConn(t, f), Size: int64(size)}, -1)
	if err != nil || w == nil {
		t.Fatalf("NewWarmer = %v, %v", w, err)
	}
	defer w.Close()
	var missing []int // the grants of the chunks found missing
	for left := size; left > 0; {
		warms := st.Warms.Load()
		_, n := takeReadIn(t, w, f, left)
		if st.Warms.Load() > warms {
			missing = append(missing, n)
		}
		left -= n
	}
	if len(missing) < len(want) || !slices.Equal(missing[:len(want)], want) {
		t.Errorf("the chunks found missing were granted %v; want %v first", missing, want)
	}
}

// TestMarkStep: the step between the pages a chain reads is the
// device's readahead where that is under a guard, at least minStep and
// in whole pages, else a guard; markStep keeps the answer per device.
func TestMarkStep(t *testing.T) {
	const guard = 1 << 20
	page := os.Getpagesize()
	for _, c := range []struct {
		ra    int
		known bool
		guard int
		want  int
	}{
		{0, false, guard, guard},                   // not a block device of its own
		{0, true, guard, guard},                    // readahead off
		{page / 2, true, guard, guard},             // under a page: off
		{16 << 10, true, guard, minStep},           // under minStep
		{minStep, true, guard, minStep},            // the usual default
		{200<<10 + 100, true, guard, 200 << 10},    // whole pages
		{guard, true, guard, guard},                // a guard's worth
		{8 << 20, true, guard, guard},              // more than a guard
		{16 << 10, true, 64 << 10, 64 << 10},       // a guard under minStep
		{96 << 10, true, minStep / 2, minStep / 2}, // likewise
	} {
		if got := stepFor(c.ra, c.known, c.guard); got != c.want {
			t.Errorf("stepFor(%d, %v, %d) = %d; want %d", c.ra, c.known, c.guard, got, c.want)
		}
	}
	d := &Driver{guard: make([]byte, guard)}
	if got := d.markStep(0); got != guard { // no device 0:0 in sysfs
		t.Errorf("markStep(0:0) = %d; want a guard, %d", got, guard)
	}
	f := testFile(t, []byte("x"))
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	dev := uint64(st.Dev)
	ra, known := readahead(dev)
	if got, want := d.markStep(dev), stepFor(ra, known, guard); got != want {
		t.Errorf("markStep(%d:%d) = %d (readahead %d, %v); want %d", unix.Major(dev), unix.Minor(dev), got, ra, known, want)
	}
	// The cache answers without sysfs.
	d.steps[dev] = 12345
	if got := d.markStep(dev); got != 12345 {
		t.Errorf("markStep after caching 12345 = %d", got)
	}
}

// TestWarmerSmallReadahead: on a device that reads ahead less than a
// guard (markStep), a Warmer grants the chunks the ring reads from, a
// cold file's, in at most maxChain-1 of its readahead windows, so that
// its chains read a page of each window; a file in the page cache still
// goes in whole cachedChunk grants, with no ring op. The first chunks
// of a cold file are not ramped up (startChunk): such a device's windows
// are too small for it. Each grant is in the page cache by the time it
// is made.
func TestWarmerSmallReadahead(t *testing.T) {
	const (
		size   = 8 << 20
		window = 128 << 10
	)
	for _, c := range []struct {
		name    string
		cached  bool
		first   int // the first grant: no startChunk ramp on such a device
		largest int
	}{
		{"cold", false, (maxChain - 1) * window, (maxChain - 1) * window},
		{"cached", true, cachedChunk, cachedChunk},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, st := newTestDriverWith(t, 2, 1, DefaultWarmChunk)
			f := testFile(t, make([]byte, size))
			skipUnlessMayRead(t, f)
			if n := fdtest.CachedPages(t, f, size); n > 0 {
				t.Skipf("%d pages still in the page cache after POSIX_FADV_DONTNEED (tmpfs?)", n)
			}
			if c.cached {
				io.Copy(io.Discard, f)
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					t.Fatal(err)
				}
			}
			d.steps = map[uint64]int{0: window} // the File below has Dev 0
			w := newWarmer(t, d, f, size)
			largest := 0
			for left := size; left > 0; {
				off, n := takeReadIn(t, w, f, left)
				if off == 0 && n != c.first {
					t.Errorf("first grant %d; want %d", n, c.first)
				}
				largest = max(largest, n)
				left -= n
			}
			if largest != c.largest {
				t.Errorf("largest grant %d; want %d", largest, c.largest)
			}
			if c.cached && st.SQEs.Load() != 0 {
				t.Errorf("%d SQEs for a file in the page cache; want none", st.SQEs.Load())
			}
		})
	}
}

// pagesReadIn reports whether every page of the n bytes at off of fd is
// in the page cache, counting up to readInAsks times as Warmer.readIn
// does (a count can miss a folio: pagesPresent); unlike readIn it says
// yes where the kernel cannot count (no cachestat), where a test has no
// other way to tell.
func pagesReadIn(fd int, off, n int64) bool {
	for range readInAsks {
		if present, known := pagesPresent(fd, off, n); present || !known {
			return true
		}
	}
	return false
}

// TestWarmerOneShortChunk: a chunk its reads leave short (here its pages
// dropped after the reads; in use, a chunk whose first page was already
// cached, by another reader's readahead, so that the READ into the
// guard, stopping there, read in none of the rest) is read by copying
// it, and the copy goes on behind the readahead: only chunks left short
// twice in a row are taken for a device that reads ahead less than a
// chunk (shortReadahead), which copies every later chunk through
// userspace. Two short chunks with a good one between are not.
func TestWarmerOneShortChunk(t *testing.T) {
	const size = rampMin // no startChunk ramp: every chunk a guard
	d, st := newTestDriverWith(t, 2, 1, 256<<10)
	f := testFile(t, make([]byte, size))
	skipUnlessMayRead(t, f)
	if n := fdtest.CachedPages(t, f, size); n > 0 {
		t.Skipf("%d pages still in the page cache after POSIX_FADV_DONTNEED (tmpfs?)", n)
	}
	// No readahead past what each read asks: every chunk is missing
	// when the Warmer comes to it, and read into the guard.
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	// The first and third chunks read into the guard are left short:
	// two short chunks, not in a row.
	guarded := 0
	d.afterGuard = func(off, n int64) {
		if guarded++; guarded == 1 || guarded == 3 {
			unix.Fadvise(int(f.Fd()), off, n, unix.FADV_DONTNEED)
		}
	}
	w := newWarmer(t, d, f, size)
	takeAll(t, w, f, size)
	if guarded < 3 {
		t.Fatalf("%d chunks read into the guard; the test needs 3", guarded)
	}
	if w.mode != behindReadahead {
		t.Errorf("mode %d after two short chunks apart and %d chunks read in; want behindReadahead (%d)", w.mode, st.Warms.Load(), behindReadahead)
	}
}

// takeReadIn has w grant its next chunk, at most left bytes, and fails
// t unless every page of the grant is in the page cache (pagesReadIn). It
// returns where the grant starts and its size.
func takeReadIn(t *testing.T, w *Warmer, f *os.File, left int) (off int64, n int) {
	t.Helper()
	off = w.off
	n, err := w.Take(context.Background(), left)
	if err != nil {
		t.Fatal(err)
	}
	if !pagesReadIn(int(f.Fd()), off, int64(n)) {
		t.Fatalf("the %d bytes granted at %d are not all in the page cache", n, off)
	}
	return off, n
}

// newWarmer returns d's Warmer for the whole file f of size bytes, from
// its start, failing t where there is none; it is closed when the test
// ends.
func newWarmer(t *testing.T, d *Driver, f *os.File, size int) *Warmer {
	t.Helper()
	w, err := d.NewWarmer(File{Conn: rawConn(t, f), Size: int64(size)}, -1)
	if err != nil || w == nil {
		t.Fatalf("NewWarmer = %v, %v", w, err)
	}
	t.Cleanup(w.Close)
	return w
}

// takeAll has w grant the size bytes of f, chunk by chunk, each checked
// as takeReadIn checks it.
func takeAll(t *testing.T, w *Warmer, f *os.File, size int) {
	t.Helper()
	for left := size; left > 0; {
		_, n := takeReadIn(t, w, f, left)
		left -= n
	}
}

// TestNewWarmerSectionBeingRead: a short copy from a large file whose
// pages are all in the page cache, some of them still being read in
// (readahead that POSIX_FADV_WILLNEED started just before, as another
// reader's readahead of the same range would be), gets a Warmer: without
// one, the copy's own sendfile(2) waits for those reads on its OS
// thread, which is what the Warmer spares it (its probe of the chunk's
// last byte finds it not readable, and the ring waits for the reads).
// A small file is asked the same. Telling needs a disk slower than the
// probe: the test skips where no page is ever caught being read.
func TestNewWarmerSectionBeingRead(t *testing.T) {
	for _, c := range []struct {
		name   string
		size   int
		off, n int64 // the section read in, and the copy
		limit  int64
	}{
		{"section of a large file", cachedChunk + 1<<20, 2 << 20, 64 << 10, 64 << 10},
		{"small file", 64 << 10, 0, 64 << 10, -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, _ := newTestDriverWith(t, 2, 1, DefaultWarmChunk)
			f := testFile(t, fdtest.Random(c.size))
			skipUnlessMayRead(t, f)
			fdNum := int(f.Fd())
			if _, known := pagesPresent(fdNum, 0, 4096); !known {
				t.Skip("no cachestat(2): Linux 6.5")
			}
			reading, unwarmed := 0, 0
			for range 50 {
				fdtest.Evict(t, f)
				if n := fdtest.CachedPages(t, f, int64(c.size)); n > 0 {
					t.Skipf("%d pages still in the page cache after POSIX_FADV_DONTNEED (tmpfs?)", n)
				}
				if err := unix.Fadvise(fdNum, c.off, c.n, unix.FADV_WILLNEED); err != nil {
					t.Fatal(err)
				}
				if _, err := f.Seek(c.off, io.SeekStart); err != nil {
					t.Fatal(err)
				}
				w, err := d.NewWarmer(File{Conn: rawConn(t, f), Size: int64(c.size)}, c.limit)
				if err != nil {
					t.Fatal(err)
				}
				// A page once readable stays so: one not readable now
				// was not when NewWarmer asked.
				if !readableAt(fdNum, c.off+c.n-1) {
					reading++
					if w == nil {
						unwarmed++
					}
				}
				if w != nil {
					w.Close()
				}
			}
			if reading == 0 {
				t.Skip("no page was caught being read: the disk is too fast for this test")
			}
			if unwarmed > 0 {
				t.Errorf("%d of %d copies whose last page was still being read got no Warmer", unwarmed, reading)
			}
		})
	}
}

// TestNewWarmerNoChunkCached: a copy that reads nothing from the page
// cache counts no chunk found there (Counters.CachedReads, the engine's
// Stats.Cached), whatever its limit: a copy of an empty file, one from
// past the end of a large file, and one of a procfs file, which has no
// page cache.
func TestNewWarmerNoChunkCached(t *testing.T) {
	const large = cachedChunk + 1<<20
	for _, c := range []struct {
		name  string
		open  func(t *testing.T) (*os.File, int64) // the file and its offset
		limit int64
	}{
		{"empty file, a limit", func(t *testing.T) (*os.File, int64) {
			return testFile(t, nil), 0
		}, 4096},
		{"empty file, no limit", func(t *testing.T) (*os.File, int64) {
			return testFile(t, nil), 0
		}, -1},
		{"past the end of a large file", func(t *testing.T) (*os.File, int64) {
			return testFile(t, make([]byte, large)), large + 4096
		}, 64 << 10},
		{"procfs file, a limit", func(t *testing.T) (*os.File, int64) {
			return openAdv21(t, "/proc/self/status"), 0
		}, 100},
		{"procfs file, no limit", func(t *testing.T) (*os.File, int64) {
			return openAdv21(t, "/proc/self/status"), 0
		}, -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, st := newTestDriverWith(t, 2, 1, DefaultWarmChunk)
			f, off := c.open(t)
			if _, err := f.Seek(off, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			var fst unix.Stat_t
			if err := unix.Fstat(int(f.Fd()), &fst); err != nil {
				t.Fatal(err)
			}
			w, err := d.NewWarmer(File{Conn: rawConn(t, f), Size: fst.Size, Dev: uint64(fst.Dev)}, c.limit)
			if err != nil {
				t.Fatal(err)
			}
			if w != nil {
				defer w.Close()
				left := c.limit
				if left < 0 {
					left = 1 << 20
				}
				if _, err := w.Take(context.Background(), int(left)); err != nil {
					t.Fatal(err)
				}
			}
			if n := st.CachedReads.Load(); n != 0 {
				t.Errorf("CachedReads = %d; want 0 (a Warmer: %v)", n, w != nil)
			}
		})
	}
}

// TestTurns: a turn is taken where one is free; where all are held and
// none is taken or given back for stuckTurns, a wait ends without one;
// where the turns move (as other copies' takes and gives move them), a
// wait goes on past stuckTurns until it gets one; a wait ends with its
// context.
func TestTurns(t *testing.T) {
	for _, c := range []struct {
		name     string
		held     int  // of the two turns
		moving   bool // turns move for 3*stuckTurns, then a held one is given back
		cancel   bool // the wait's context is cancelled
		want     bool
		wantsErr bool
	}{
		{"free", 1, false, false, true, false},
		{"all held, standing still", 2, false, false, false, false},
		{"all held, moving", 2, true, false, true, false},
		{"all held, cancelled", 2, false, true, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := newTurns(2)
			for range c.held {
				if took, err := ts.take(context.Background()); !took || err != nil {
					t.Fatalf("take = %v, %v", took, err)
				}
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				if !c.moving {
					return
				}
				for end := time.Now().Add(3 * stuckTurns); time.Now().Before(end); {
					time.Sleep(2 * time.Millisecond)
					ts.move()
				}
				ts.give()
			}()
			ctx, cancel := context.WithCancel(context.Background())
			if c.cancel {
				cancel()
			}
			defer cancel()
			took, err := ts.take(ctx)
			<-done
			if took != c.want || (err != nil) != c.wantsErr {
				t.Errorf("take = %v, %v; want %v, error %v", took, err, c.want, c.wantsErr)
			}
		})
	}
}

// TestStalledKeepsSendTurns: a stalled ring keeps work off the ring, not
// the page cache's sends off the turns. A Warmer's chunk found in the
// page cache needs no read of the ring, and the call sending it takes a
// turn (Enter) while the ring is stalled as before.
func TestStalledKeepsSendTurns(t *testing.T) {
	const size = 8 << 20
	d, _ := newTestDriverWith(t, 2, 1, 1<<20)
	d.senders = newTurns(1)
	f := testFile(t, make([]byte, size))
	skipUnlessMayRead(t, f)
	io.Copy(io.Discard, f)
	f.Seek(0, io.SeekStart)
	w, err := d.NewWarmer(File{Conn: rawConn(t, f), Size: size}, -1)
	if err != nil || w == nil {
		t.Fatalf("NewWarmer = %v, %v", w, err)
	}
	defer w.Close()
	time.Sleep(stalledEnter - time.Since(d.epoch))
	d.entered.Store(1) // an io_uring_enter under way since the driver began
	defer d.entered.Store(0)
	if !d.Stalled() {
		t.Fatal("not Stalled")
	}
	if _, err := w.Take(context.Background(), size); err != nil {
		t.Fatal(err)
	}
	entered, err := w.Enter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if entered {
		w.Leave()
	} else {
		t.Error("a cached chunk granted while the ring is stalled took no turn")
	}
}

// TestWarmerSenders: the Gate Senders returns takes one of the driver's
// turns at every Enter, whatever the Warmer granted last (nothing here),
// and a second Enter while the only turn is held gets none.
func TestWarmerSenders(t *testing.T) {
	const size = 1 << 20
	d, _ := newTestDriverWith(t, 2, 1, 1<<20)
	f := testFile(t, make([]byte, size))
	w, err := d.NewWarmer(File{Conn: rawConn(t, f), Size: size}, -1)
	if err != nil || w == nil {
		t.Fatalf("NewWarmer = %v, %v", w, err)
	}
	defer w.Close()
	if g := w.Senders(); g != nil {
		t.Fatalf("Senders = %v with no turns, want nil", g)
	}
	d.senders = newTurns(1)
	g := w.Senders()
	before := d.st.Turns.Load()
	entered, err := g.Enter(context.Background())
	if err != nil || !entered {
		t.Fatalf("Enter = %v, %v; want a turn (nothing granted yet)", entered, err)
	}
	if got := d.st.Turns.Load() - before; got != 1 {
		t.Errorf("Stats.Turns moved by %d, want 1", got)
	}
	second := make(chan bool, 1)
	go func() {
		ok, _ := g.Enter(context.Background())
		second <- ok
	}()
	time.Sleep(10 * time.Millisecond)
	select {
	case ok := <-second:
		// Only the stuck rule ends the wait early: without a turn.
		if ok {
			t.Fatal("a second Enter took a turn while the only one was held")
		}
		g.Leave()
		return
	default:
	}
	g.Leave()
	if <-second { // false where the stuck rule ended the wait first
		g.Leave()
	}
}
