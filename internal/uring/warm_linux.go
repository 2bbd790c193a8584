package uring

import (
	"context"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/ctxerr"
	"github.com/pipes-go/pipes/internal/fd"
	"github.com/pipes-go/pipes/splice"
)

// Warmer keeps a copy from a regular file off the disk: it is the
// splice.Pacer of a sendfile(2) or splice(2) copy that, before each chunk
// the copy reads, asks whether the chunk's pages are in the page cache
// (ChunkResidency, which starts no I/O) and has the ring bring them in
// first, so that the copy's goroutine never blocks an OS thread on the
// disk: where a page is missing, the ring reads the chunk (warm); where
// every page is there, its first page, which starts the kernel's next
// readahead from the ring, not from the copy's thread (a probe there, or
// the copy's own read, would start it when it meets the page with the
// readahead mark, and wait for the disk queue); then, in both cases, the
// chunk's last page, which waits for any readahead still reading the
// chunk. A chunk is at most cachedChunk; where the ring reads from it,
// at most maxChain-1 steps (a guard, or the device's readahead where
// that is less: markStep), and a guard (Config.WarmChunk) where it reads
// it in: this also bounds how long one sendfile(2) or splice(2) call of
// the copy runs.
//
// The ring reads a chunk with IORING_OP_READ into the driver's guard,
// an address range mapped with no access: the READ does what a read(2)
// of the chunk does up to its first copy out (it starts the chunk's disk
// reads, the kernel's readahead with them, and waits for the first
// page), then fails with EFAULT, so that no byte crosses into userspace;
// a READ of the chunk's last page, into the guard too and hardlinked
// behind it, completes once the rest of the chunk is read. On a file
// system with asynchronous buffered reads neither takes an io-wq worker
// (the kernel starts the disk reads and completes the op from task
// work), so any number of copies have reads in flight at once without a
// thread each. The kernel reads all a READ asks for in one readahead
// only up to the larger of the device's readahead (read_ahead_kb) and
// its largest request (max_sectors_kb): on a device where both are
// under Config.WarmChunk, a chunk read into the guard is read in only in
// part. The Warmer checks (cachestat) that a missing chunk's reads left
// no page missing; where they did, it reads the chunk again into a
// scratch buffer nobody reads, a READ that goes on through the whole
// chunk, and reads every missing chunk of the copy so once two chunks in
// a row were left short (shortReadahead): the bytes cross into userspace
// once, as the price of such a device.
//
// The copy must read the file from the offset the Warmer was made at, in
// order, and give back what it did not read (Refund), as a copy does
// with its Pacer; the Warmer then knows the offset of every chunk
// without asking the kernel. Close releases the Warmer once the copy
// is done.
type Warmer struct {
	d    *Driver
	src  syscall.RawConn
	off  int64 // offset of the next byte to grant
	size int64 // past it the copy meets EOF: nothing to warm
	mode warmMode
	// step is how far apart the pages a chain reads within a chunk
	// are (markStep): a guard, or the device's readahead where that is
	// less, but not under minStep.
	step int64
	// misses counts the chunks found Missing: the first ones are read
	// in smaller pieces (startChunk).
	misses int
	// shorts counts the missing chunks in a row that their reads into
	// the guard left with pages missing; at shortChunks the copy goes
	// shortReadahead.
	shorts int
	// cached: the chunk granted last holds at least gatedChunk bytes
	// that a probe found readable from the page cache (Cached), so a
	// call sending it into a non-blocking socket, made right after,
	// waits for no disk and no peer: it takes a turn (Enter).
	cached bool
	// pin names the file in the chains, from the first chunk the
	// Warmer reads in until Close: one slot update per copy, not two per
	// chunk. nil: not pinned yet.
	pin *fileRef
}

// warmMode is where a Warmer's copy is with respect to the disk; it only
// moves down the list.
type warmMode int

const (
	// hot: every chunk so far was readable from the page cache. A chunk
	// whose pages are all there is probed (readableAt its last byte)
	// and granted where the probe finds it readable, with no ring op.
	hot warmMode = iota
	// behindReadahead: the copy has met a chunk not readable yet, so the
	// kernel's readahead runs just ahead of it, marks and all. The ring
	// reads the first and last page of each chunk whose pages are all
	// there, not a probe on the copy's thread.
	behindReadahead
	// shortReadahead: behindReadahead, where shortChunks chunks in a row
	// read into the guard still had pages missing after the reads: the
	// device reads ahead less than a chunk at once (read_ahead_kb and
	// max_sectors_kb both under Config.WarmChunk), and a read that stops
	// at its first copy out reads in only that much. A missing chunk is
	// read by copying it into the scratch buffer, which reads it whole.
	shortReadahead
	// refused: the kernel cannot read the file through the ring; the
	// Warmer grants every chunk as it is.
	refused
)

const (
	// cachedChunk bounds a chunk found in the page cache: the chunk of
	// splice.Sendfile.
	cachedChunk = 4 << 20
	// gatedChunk is the least a chunk found in the page cache holds
	// for the call sending it to take a turn (Enter).
	gatedChunk = 1 << 20
	// DefaultWarmChunk is the Config.WarmChunk the engine uses.
	DefaultWarmChunk = 1 << 20
	// rampMin: a copy with more than this left reads its first missing
	// chunks in startChunk pieces.
	rampMin = 2 << 20
	// shortChunks is how many missing chunks in a row the reads into
	// the guard must leave short for a Warmer to take its device for
	// one that reads ahead less than a chunk. One is not enough: a
	// chunk whose first page another reader's readahead had cached
	// (copies of sections of one file) is left short on any device,
	// since the READ into the guard stops at that page.
	shortChunks = 2
)

// startChunk is the most the i-th chunk (from 0) that a Warmer finds
// missing may hold, 0 for no bound: the first ones are sized as
// sendfile(2) starts reading a file, so that the kernel's readahead
// ramps up as it does for io.Copy. A read that misses the page cache
// starts a synchronous readahead sized from the read, of single pages
// (order-0 folios); only a readahead that a reader starts at the
// readahead mark grows its folios, two orders at a time. sendfile(2)
// reads 64 KiB at a time: its first read of a file reads those 16 pages,
// its second a window of 64 pages whose mark is 16 pages in, and from
// there each window is read into larger folios. A first READ of a whole
// 1 MiB chunk reads 256 single pages, and the next 512 more: over three
// times the folios per GiB, each inserted into the page cache at a cost
// (docs/benchmarks.md, "Readahead in single pages"). So the first two
// missing chunks are read as sendfile's first two reads, and the third
// ends where the second's window ends, 48 pages on, so that the chunk
// after it starts at the next window's mark, which the ring's read of
// it meets, not the copy's sendfile(2). The windows after it are 1 MiB,
// 2 MiB, 4 MiB, ... up to read_ahead_kb, so where that is a multiple of
// 1 MiB each starts at a guard's size from a chunk's first page, where
// the ring reads a page (warm). A device that reads ahead less than a
// guard (128 KiB is the usual default) reads in windows of its
// read_ahead_kb: the ring then reads a page at each of those from a
// chunk's first page (markStep), and a chunk it reads from holds at most
// maxChain-1 of them (chainBytes).
//
// Where at most rampMin of the copy is left, a missing chunk is a whole
// guard from the start: the copy would end before its readahead grew
// large folios, and smaller chunks would only cost it more round trips
// to the ring (measured on 1 MiB copies, same section). Nor is one
// ramped where the device reads ahead less than a guard (Warmer.ramps).
func startChunk(i int) int {
	switch i {
	case 0, 1:
		return 64 << 10
	case 2:
		return 192 << 10
	}
	return 0
}

// NewWarmer returns a Warmer for a copy of at most limit bytes (< 0: to
// EOF) from the file src, which starts at the file's offset; nil, with
// no error, where the driver has no Warmers (Config.WarmChunk 0) or the
// copy has nothing to warm: a short copy all in the page cache
// (cachedCopy), a file opened O_DIRECT, whose reads bypass the page
// cache (what the ring read in would be read again from the disk), or a
// file on a file system whose reads wait for a server or whose pages
// cachestat(2) does not count (MayRead).
func (d *Driver) NewWarmer(src File, limit int64) (*Warmer, error) {
	if d.guard == nil {
		return nil, nil
	}
	skip, off, err := d.cachedCopy(src, limit)
	if err != nil || skip {
		return nil, err
	}
	if !MayRead(src.Conn) {
		return nil, nil
	}
	if direct, err := openedDirect(src.Conn); err != nil || direct {
		return nil, err
	}
	if off < 0 {
		if off, err = fileOffset(src.Conn); err != nil {
			return nil, err
		}
	}
	return &Warmer{d: d, src: src.Conn, off: off, size: src.Size, step: int64(d.markStep(src.Dev))}, nil
}

// Take grants the next chunk, at most most bytes (what the copy has left
// to read), once it is in the page cache. It fails only when ctx
// ends, or the driver is closed, while the ring reads the chunk in. Any
// other failure to read the chunk in is left to the copy, whose own read
// meets it.
func (w *Warmer) Take(ctx context.Context, most int) (int, error) {
	w.cached = false // until the probe below finds the chunk readable
	n := min(most, cachedChunk)
	left := min(int64(n), w.size-w.off) // what the copy can read of it
	if left <= 0 || w.mode == refused {
		w.off += int64(n)
		return n, nil
	}
	var head int64 // what the ring reads first of the chunk; 0: nothing
	res := w.residency(int(left))
	w.cached = res == Cached && left >= gatedChunk
	switch res {
	case Missing:
		// Read in one guard's worth, or maxChain-1 readahead windows
		// where those are smaller (chainBytes), and grant that: the
		// READ starts the reads of all of it, sized as a copy's read
		// of it would be (the kernel sizes its readahead by the read).
		n = min(n, len(w.d.guard), w.chainBytes())
		if start := startChunk(w.misses); start > 0 && w.ramps() && min(int64(most), w.size-w.off) > rampMin {
			n = min(n, start)
		}
		w.misses++
		left = min(int64(n), left)
		head = left
	case Present:
		// Read the first page, not the copy: it may carry the
		// kernel's readahead mark, where the reader starts the next
		// readahead and can wait for the disk queue.
		n = min(n, w.chainBytes())
		left = min(int64(n), left)
		page := int64(os.Getpagesize())
		head = min(page-w.off%page, left)
	}
	// Where the loop's enter is stalled, the copy's own read meets the
	// chunk, as io.Copy's does, not the ring behind the stalled disk.
	if head > 0 && !w.d.enterStalled() && w.pinned() {
		if res == Missing {
			w.d.st.Warms.Add(1)
		}
		w.mode = max(w.mode, behindReadahead)
		r, err := w.read(ctx, res == Missing, head, left)
		if err != nil {
			return 0, err
		}
		if r < 0 && fd.Refused(syscall.Errno(-r)) {
			w.mode = refused
		}
	}
	w.off += int64(n)
	return n, nil
}

// ramps reports whether the copy's first missing chunks are read in
// startChunk pieces: where the device reads ahead at least a guard, the
// windows that ramp grows into larger folios. Where it reads ahead less,
// its windows are too small for large folios, and small first chunks
// only start the readahead's marks ahead of the Warmer, for the copy's
// sendfile(2) to meet, which then waits for the disk queue on its
// thread (docs/benchmarks.md, "Devices that read ahead 128 KiB").
func (w *Warmer) ramps() bool { return w.step >= int64(len(w.d.guard)) }

// chainBytes is the most a chunk the ring reads from may hold: warm's
// reads of it, the first page at each step and the last page, fit in a
// chain (maxChain).
func (w *Warmer) chainBytes() int { return (maxChain - 1) * int(w.step) }

// read has the ring read in the n bytes at the Warmer's offset, head
// bytes of them first (warm); missing: some pages were not in the page
// cache. A missing chunk that the reads into the guard left with pages
// missing is read again by copying it (warmCopy), as every missing
// chunk is once shortChunks in a row were (shortReadahead). It returns
// the first read's result, as warm does.
func (w *Warmer) read(ctx context.Context, missing bool, head, n int64) (int32, error) {
	if missing && w.mode == shortReadahead {
		return w.d.warmCopy(ctx, *w.pin, w.off, n)
	}
	r, err := w.d.warm(ctx, *w.pin, w.off, head, n, w.step)
	if err != nil || !missing || r != -int32(syscall.EFAULT) {
		return r, err // not a missing chunk, or failed: the copy's read tells
	}
	if hook := w.d.afterGuard; hook != nil {
		hook(w.off, n)
	}
	if w.readIn(n) {
		w.shorts = 0
		return r, nil
	}
	if w.shorts++; w.shorts >= shortChunks {
		w.mode = shortReadahead
	}
	return w.d.warmCopy(ctx, *w.pin, w.off, n)
}

// readIn reports whether no page of the n bytes at the Warmer's offset
// is missing from the page cache (ChunkResidency), once the ring's reads
// of them are done. A count that misses some is taken again, up to
// readInAsks counts in all, since cachestat(2) can miss a folio that is
// there (pagesPresent), and chunks found short send the rest of the copy
// through the scratch buffer (shortChunks).
func (w *Warmer) readIn(n int64) bool {
	in := true
	w.src.Control(func(sysfd uintptr) {
		for range readInAsks {
			if in = ChunkResidency(int(sysfd), w.off, int(n), w.size) != Missing; in {
				return
			}
		}
	})
	return in
}

// readInAsks is how many counts readIn takes of a chunk before it takes
// the chunk for short.
const readInAsks = 3

// fileOffset reads the offset of the caller's file behind c.
func fileOffset(c syscall.RawConn) (off int64, err error) {
	cerr := c.Control(func(sysfd uintptr) {
		off, err = unix.Seek(int(sysfd), 0, io.SeekCurrent)
		if err != nil {
			err = &os.SyscallError{Syscall: "lseek", Err: err}
		}
	})
	if cerr != nil {
		return 0, cerr
	}
	return off, err
}

// openedDirect reports whether the caller's file behind c was opened
// O_DIRECT.
func openedDirect(c syscall.RawConn) (direct bool, err error) {
	cerr := c.Control(func(sysfd uintptr) {
		fl, ferr := unix.FcntlInt(sysfd, unix.F_GETFL, 0)
		if ferr != nil {
			err = &os.SyscallError{Syscall: "fcntl", Err: ferr}
			return
		}
		direct = fl&unix.O_DIRECT != 0
	})
	if cerr != nil {
		return false, cerr
	}
	return direct, err
}

// Close releases what the Warmer holds (its pin of the file). The copy
// calls it once it has stopped asking for chunks; no chain of the Warmer
// is in flight then, since Take waits for each.
func (w *Warmer) Close() {
	if w.pin != nil {
		w.d.unpin(*w.pin)
		w.pin = nil
	}
}

// Enter is the Warmer's splice.Gate: a call sending the chunk granted
// last takes one of the driver's CachedSenders turns (turns.take) where
// the chunk holds at least gatedChunk bytes that a probe found readable
// from the page cache; other chunks go without one (false). Such a call
// into a non-blocking socket uses only the CPU, so the bound keeps at
// most that many CPUs busy with those calls, and the process's other
// goroutines a CPU to run on: see docs/design.md, "Sharing the CPUs".
func (w *Warmer) Enter(ctx context.Context) (bool, error) {
	if !w.cached || w.d.senders == nil {
		return false, nil
	}
	took, err := w.d.senders.take(ctx)
	if took {
		w.d.st.Turns.Add(1)
	}
	return took, err
}

// Leave gives back the turn Enter gave.
func (w *Warmer) Leave() { w.d.senders.give() }

// Senders returns a splice.Gate whose every Enter takes one of the
// driver's CachedSenders turns, for calls sending bytes this Warmer
// has granted, which it has read in: a fan-out's destinations, each
// sending from the file itself at its own offset (so the Warmer's own
// Enter, which judges the chunk granted last, does not apply). Nil
// where the driver bounds no such calls.
func (w *Warmer) Senders() splice.Gate {
	if w.d.senders == nil {
		return nil
	}
	return senderTurns{w.d}
}

// senderTurns is Warmer.Senders's Gate.
type senderTurns struct{ d *Driver }

func (g senderTurns) Enter(ctx context.Context) (bool, error) {
	took, err := g.d.senders.take(ctx)
	if took {
		g.d.st.Turns.Add(1)
	}
	return took, err
}

func (g senderTurns) Leave() { g.d.senders.give() }

// turns are the driver's CachedSenders turns: n tokens, taken and given
// back in order of asking (a Go channel's FIFO of waiting senders).
//
// A call under a turn can wait for the disk after all: a page the probe
// found readable may have been still being read by another reader (the
// probe reads only a chunk's last byte), or evicted since; on a disk
// that stalls, the call waits as long as the disk does. So the waits
// for a turn end without one once no turn has been taken or given back
// for stuckTurns: the calls under the turns are stuck, not sending, and
// the bound they keep would only hold every other cached send behind a
// disk. One watch goroutine per stretch of waiting tells, so that the
// waiters stay in the channel's queue, in order, with no timer each.
type turns struct {
	tokens chan struct{}
	epoch  time.Time
	moved  atomic.Int64 // when a turn was last taken or given back, since epoch

	mu      sync.Mutex
	waiting int           // takes waiting for a token
	stuck   chan struct{} // closed once the turns stand still; nil: no watch running
}

// stuckTurns is how long the turns must stand still for the waits to
// end without one: a call under a turn sends at most cachedChunk from
// the page cache, a few ms of CPU (docs/benchmarks.md, "Figures quoted
// in the code").
const stuckTurns = 50 * time.Millisecond

func newTurns(n int) *turns {
	return &turns{tokens: make(chan struct{}, n), epoch: time.Now()}
}

// take takes a turn (true), waiting for one while all are taken, until
// ctx ends (its error) or the turns stand still for stuckTurns (false,
// nil: the call goes without one).
func (t *turns) take(ctx context.Context) (bool, error) {
	select {
	case t.tokens <- struct{}{}:
		t.move()
		return true, nil
	default:
	}
	stuck := t.wait()
	defer t.waited()
	select {
	case t.tokens <- struct{}{}:
		t.move()
		return true, nil
	case <-ctx.Done():
		return false, ctxerr.Wrap("uring", ctx, nil)
	case <-stuck:
		return false, nil
	}
}

// wait counts a take that waits, and returns the channel its watch
// closes once the turns stand still, starting the watch if none runs.
func (t *turns) wait() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.waiting++
	if t.stuck == nil {
		t.stuck = make(chan struct{})
		go t.watch(t.stuck)
	}
	return t.stuck
}

// waited uncounts a take that waited.
func (t *turns) waited() {
	t.mu.Lock()
	t.waiting--
	t.mu.Unlock()
}

// watch closes stuck once the turns stand still for stuckTurns while
// takes wait, and ends there or once none waits.
func (t *turns) watch(stuck chan struct{}) {
	for {
		time.Sleep(stuckTurns - t.still())
		t.mu.Lock()
		switch {
		case t.waiting == 0:
		case t.still() >= stuckTurns:
			close(stuck)
		default:
			t.mu.Unlock()
			continue
		}
		t.stuck = nil
		t.mu.Unlock()
		return
	}
}

// give gives back a turn take gave.
func (t *turns) give() {
	<-t.tokens
	t.move()
}

// still is how long ago a turn was last taken or given back.
func (t *turns) still() time.Duration {
	return time.Since(t.epoch) - time.Duration(t.moved.Load())
}

func (t *turns) move() { t.moved.Store(int64(time.Since(t.epoch))) }

// Refund takes back the n bytes granted last that the copy did not read.
func (w *Warmer) Refund(n int) { w.off -= int64(n) }

// pinned pins the file for the Warmer's chains, once, and reports
// whether it is pinned. A file that cannot be pinned is not warmed: the
// copy's own read meets what stopped the pin (a closed file, say).
func (w *Warmer) pinned() bool {
	if w.pin == nil {
		p, err := w.d.pin(w.src)
		if err != nil {
			return false
		}
		w.pin = &p
	}
	return true
}

// residency tells where the n bytes at the Warmer's offset are
// (ChunkResidency; hotResidency while the copy is hot). A file the
// caller has closed counts as Cached: the copy's own read reports the
// close.
func (w *Warmer) residency(n int) Residency {
	res := Cached
	w.src.Control(func(sysfd uintptr) {
		if w.mode == hot {
			res = hotResidency(int(sysfd), w.off, n, w.size)
		} else {
			res = ChunkResidency(int(sysfd), w.off, n, w.size)
		}
	})
	if res != Missing {
		w.d.st.CachedReads.Add(1)
	}
	return res
}

// hotResidency is ChunkResidency for a copy that has not met the disk:
// a range whose pages are all there is Cached where its last byte is
// readable (readableAt). The kernel's readahead reads a window in order,
// so a range still being read has its last page among those not read
// yet. (Its first page may carry the readahead mark; a probe there
// would start the next readahead on the copy's thread just as the
// copy's own read does, so it is not probed.) n must not reach past
// size.
func hotResidency(fd int, off int64, n int, size int64) Residency {
	res := ChunkResidency(fd, off, n, size)
	if res == Present && readableAt(fd, off+int64(n)-1) {
		res = Cached
	}
	return res
}

// warm has the ring read, into the guard, the head bytes at off of the
// caller's file, pinned as f, then the last page of the n bytes at off,
// while the calling goroutine sleeps on the reads; head is at most n
// and at most the guard's size. Once it returns, every page of the n
// bytes has been read in, unless a read failed. It returns the first
// read's result (-EFAULT where the read went as it should: the guard
// takes no byte; 0 at EOF; another -errno), and fails only when ctx ends
// or the driver is closed first; reads cancelled by ctx are still waited
// for, so that the pin outlives them.
//
// Between the two, it reads the first page at each step from off within
// the n bytes (at most maxChain-2 of them: n is at most maxChain-1
// steps): a chunk longer than a step (one found in the page cache) may
// hold the start of a readahead window, and with it the window's mark,
// at each of them (startChunk, markStep), which the ring's read then
// meets, not the copy's sendfile(2); and the read waits for the window
// it lands in, where the window is still being read.
func (d *Driver) warm(ctx context.Context, f fileRef, off, head, n, step int64) (int32, error) {
	page := int64(os.Getpagesize())
	last := (off + n - 1) &^ (page - 1) // the last page
	marks := 0                          // the pages at off+step, off+2*step, ... before last
	if last > off {
		marks = int((last - off - 1) / step)
	}
	reads := 1 + marks
	if last > off {
		reads++
	}
	var c chain
	c.reset(reads)
	c.hardlink = true // the first read fails by design
	c.ops[0].prepRead(f, off, d.guard[:head])
	for i := 1; i <= marks; i++ {
		c.ops[i].prepRead(f, off+int64(i)*step, d.guard[:page])
	}
	if last > off {
		c.ops[reads-1].prepRead(f, last, d.guard[:off+n-last])
	}
	return d.runChain(ctx, &c)
}

// warmCopy has the ring read the n bytes at off of the caller's file,
// pinned as f, into the scratch buffer, whose bytes nobody reads: the
// read goes on through the whole range, as a read(2) of it does, where
// warm's stops at its first copy out. n is at most the guard's size. It
// returns as warm does.
func (d *Driver) warmCopy(ctx context.Context, f fileRef, off, n int64) (int32, error) {
	d.scratchOnce.Do(func() { d.scratch = make([]byte, len(d.guard)) })
	var c chain
	c.reset(1)
	c.ops[0].prepRead(f, off, d.scratch[:n])
	return d.runChain(ctx, &c)
}

// runChain submits c and sleeps until it is done, or ctx ends (c is then
// cancelled, and still waited for, so that its reads end before the
// caller's pin does). It returns the first op's result, and fails only
// when ctx ends or the driver is closed first.
func (d *Driver) runChain(ctx context.Context, c *chain) (int32, error) {
	if err := d.submitChain(c); err != nil {
		return 0, err
	}
	var err error
	select {
	case <-c.done:
	case <-ctx.Done():
		d.cancelChain(c)
		<-c.done
		err = context.Cause(ctx)
	}
	return c.ops[0].res, err
}

// initWarm sets up what Warmers need: the guard their reads land in,
// size bytes mapped with no access, shared by all. size <= 0, or a
// mapping refused: no Warmers.
func (d *Driver) initWarm(size int) {
	if size <= 0 {
		return
	}
	g, err := unix.Mmap(-1, 0, size, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err == nil {
		d.guard = g
	}
}

// closeWarm unmaps the guard. The loop must have stopped: no read can
// land in it then, nor be submitted.
func (d *Driver) closeWarm() {
	if d.guard != nil {
		unix.Munmap(d.guard)
	}
}

// cachedCopy reports whether a short copy of at most limit bytes (< 0:
// to EOF) from src has nothing to warm (skip): every byte it reads is in
// the page cache (hotResidency, one cachestat(2) and a probe of the last
// byte; counted as a chunk found there), or it reads none. A file of at
// most cachedChunk bytes is asked whole, which needs no offset. A copy
// of less than gatedChunk from a larger file (a section, a range
// request), which would take no turn (Enter) either, is asked at the
// file's offset, which it reads: off is that offset, -1 where it was not
// read. That is three system calls where a Warmer's first chunk costs
// five (fstatfs, fcntl and lseek, then the same two;
// docs/benchmarks.md, "Short copies from a large file").
func (d *Driver) cachedCopy(src File, limit int64) (skip bool, off int64, err error) {
	start, n := int64(0), src.Size // the bytes the copy reads
	off = -1
	switch {
	case 0 < src.Size && src.Size <= cachedChunk:
		// The whole file, wherever the copy starts in it.
	case src.Size > cachedChunk && 0 <= limit && limit < gatedChunk:
		if off, err = fileOffset(src.Conn); err != nil {
			return false, -1, err
		}
		if start, n = off, min(limit, src.Size-off); n <= 0 {
			return true, off, nil // at EOF: nothing to read
		}
	default:
		return false, -1, nil
	}
	res := Missing
	src.Conn.Control(func(sysfd uintptr) {
		res = hotResidency(int(sysfd), start, int(n), src.Size)
	})
	if res != Cached {
		return false, off, nil
	}
	d.st.CachedReads.Add(1) // its one chunk, found in the page cache
	return true, off, nil
}
