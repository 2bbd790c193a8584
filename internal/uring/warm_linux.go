package uring

import (
	"context"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fd"
	"github.com/pipes-go/pipes/splice"
)

// Warmer keeps a copy from a regular file off the disk: it is the
// splice.Pacer of a sendfile(2) or splice(2) copy that, before each chunk
// the copy reads, checks whether the chunk is in the page cache
// (PageCached) and, where it is not, has the ring read it in first
// (warm), so that the copy's goroutine never blocks an OS thread on the
// disk. A chunk is at most cachedChunk, and a warm pipe's worth where the
// ring reads it in: it also bounds how long one sendfile(2) or splice(2)
// call of the copy runs.
//
// A ring read waits on an io-wq worker, and the workers are few (their
// cap bounds the threads); so that the disk still has many reads in
// flight, as it has under one blocked thread per copy, the Warmer also
// asks the kernel through the ring to start reading ahead of the copy
// (POSIX_FADV_WILLNEED, which does not wait for the reads), up to
// readAhead bytes past the chunk, renewed when the copy is half way there,
// once the copy has met a chunk not in the page cache (a copy of a cached
// file costs a probe per chunk, nothing more).
//
// The copy must read the file from the offset the Warmer was made at, in
// order, and give back what it did not read (Refund), as a copy does
// with its Pacer; the Warmer then knows the offset of every chunk
// without asking the kernel.
type Warmer struct {
	d       *Driver
	src     syscall.RawConn
	off     int64 // offset of the next byte to grant
	ahead   int64 // the kernel was asked to read in up to here
	cold    bool  // a chunk was not in the page cache: read ahead from now on
	size    int64 // past it the copy meets EOF: nothing to warm
	refused bool  // the kernel cannot splice the file: warm no more
	// pin names the file in the chains, from the first chunk the
	// Warmer reads in until Close: one registration per copy, not two
	// per chunk, each of which waits for the ring's lock. nil: not
	// pinned yet.
	pin *fileRef
}

const (
	// readAhead bounds how far ahead of a copy a Warmer asks the kernel
	// to read.
	readAhead = 8 << 20
	// cachedChunk bounds a chunk found in the page cache: the chunk of
	// splice.Sendfile.
	cachedChunk = 4 << 20
)

// NewWarmer returns a Warmer for a copy from the file src, which starts
// at the file's offset; nil, with no error, where the driver cannot warm
// (it could not open /dev/null) or has nothing to warm: a small file
// wholly in the page cache (smallCached).
func (d *Driver) NewWarmer(src File) (*Warmer, error) {
	if d.warmPipes == nil {
		return nil, nil
	}
	if smallCached(src) {
		d.st.CachedReads.Add(1) // its one chunk, found in the page cache
		return nil, nil
	}
	off, err := fileOffset(src.Conn)
	if err != nil {
		return nil, err
	}
	return &Warmer{d: d, src: src.Conn, off: off, ahead: off, size: src.Size}, nil
}

// Take grants the next chunk, at most most bytes (what the copy has left
// to read), once it is in the page cache. It fails only when ctx
// ends, or the driver is closed, while the ring reads the chunk in. Any
// other failure to read the chunk in is left to the copy, whose own read
// meets it.
func (w *Warmer) Take(ctx context.Context, most int) (int, error) {
	n := min(most, cachedChunk)
	end := min(w.off+int64(most), w.size) // where the copy stops reading
	if m := min(int64(n), end-w.off); m > 0 && !w.refused {
		var wr warmRange
		if !w.cached(int(m)) {
			// Read in what one warm pipe holds, and grant that.
			n = min(n, w.d.warmChunk)
			wr.n = int(min(int64(n), m))
			w.cold = true
		}
		if w.cold && w.ahead < min(w.off+readAhead/2, end) {
			wr.aheadOff = max(w.ahead, w.off)
			wr.ahead = int(min(w.off+readAhead, end) - wr.aheadOff)
			w.ahead = wr.aheadOff + int64(wr.ahead)
		}
		if (wr.n > 0 || wr.ahead > 0) && w.pinned() {
			r, err := w.d.warm(ctx, *w.pin, w.off, wr)
			if err != nil {
				return 0, err
			}
			w.refused = r < 0 && fd.Refused(syscall.Errno(-r))
		}
	}
	w.off += int64(n)
	return n, nil
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

// cached reports whether the n bytes at the Warmer's offset are in the
// page cache. A file the caller has closed counts as cached: the copy's
// own read reports the close.
func (w *Warmer) cached(n int) bool {
	cached := true
	w.src.Control(func(sysfd uintptr) {
		cached = PageCached(int(sysfd), w.off, n)
	})
	if cached {
		w.d.st.CachedReads.Add(1)
	}
	return cached
}

// warmRange is what one warm asks of the ring: to read n bytes in now
// (0: none), and to start reading the ahead bytes at aheadOff.
type warmRange struct {
	n        int
	aheadOff int64
	ahead    int
}

// warm has the ring work on the caller's file, pinned as f, in one chain
// while the calling goroutine sleeps on it: if wr.n > 0, SPLICE of the
// wr.n bytes at off into a warm pipe hardlinked to SPLICE of that pipe
// into /dev/null; and, beside them (not linked: the read must not wait
// for the advice, which can wait for the disk's queue),
// FADVISE(WILLNEED) of the range ahead, if any.
// The ops run on io-wq workers, so the disk waits are capped kernel
// workers', not Go threads'; pages pass through the pipe as references,
// no byte is copied. It returns the read's result (bytes, or -errno; 0
// without one), and fails only when ctx ends or the driver is closed
// first. A warm pipe is held for one chain that waits for nothing but the
// disk, so waiting for one is bounded.
func (d *Driver) warm(ctx context.Context, f fileRef, off int64, wr warmRange) (int32, error) {
	var p *splice.Pipe
	if wr.n > 0 {
		var err error
		if p, err = d.warmPipes.Get(ctx); err != nil {
			return 0, err
		}
		defer d.warmPipes.Put(p) // closed, not pooled, if bytes are left in it
	}
	var c chain
	c.reset(0)
	c.hardlink = true // the discard runs after a short or failed read too
	if p != nil {
		c.ops = append(c.ops, op{chain: &c}, op{chain: &c})
		c.ops[0].prepSplice(f, off, plain(p.WriteFd()), min(wr.n, p.Size()))
		c.ops[1].prepSplice(plain(p.ReadFd()), -1, plain(d.devNull), p.Size())
		c.ops[1].unlinked = true // the read does not wait for the advice, nor it for the read
		d.st.Warms.Add(1)
	}
	if wr.ahead > 0 {
		c.ops = append(c.ops, op{chain: &c})
		c.ops[len(c.ops)-1].prepWillNeed(f, wr.aheadOff, wr.ahead)
	}
	if err := d.submitChain(&c); err != nil {
		return 0, err
	}
	var err error
	select {
	case <-c.done:
	case <-ctx.Done():
		d.cancelChain(&c)
		<-c.done
		err = context.Cause(ctx)
	}
	if p == nil {
		return 0, err
	}
	return c.ops[0].res, err
}

// initWarm sets up what Warmers need: the warm pipes and /dev/null.
// Without /dev/null there are no Warmers.
func (d *Driver) initWarm(cfg Config) {
	if cfg.WarmPipes <= 0 {
		return
	}
	null, err := unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	d.devNull = null
	d.warmPipes = splice.NewPool(cfg.WarmPipeSize, cfg.WarmPipes)
	d.warmChunk = cfg.WarmPipeSize
	if d.warmChunk <= 0 {
		d.warmChunk = splice.DefaultPipeSize
	}
}

// closeWarm releases what initWarm set up, once no chain is in flight.
func (d *Driver) closeWarm() {
	if d.warmPipes != nil {
		d.warmPipes.Close()
		unix.Close(d.devNull)
	}
}

// smallCached reports whether src is a file of at most cachedChunk bytes
// all of whose pages are in the page cache, by one cachestat(2) (Linux
// 6.5) over the whole file, which needs no offset. A copy of it has
// nothing to warm, so it costs one system call where the Warmer's first
// chunk would cost three (lseek, and a probe at both ends). false where
// the kernel cannot tell (ENOSYS, a file system without a page cache):
// the Warmer then probes chunk by chunk.
func smallCached(src File) bool {
	if src.Size <= 0 || src.Size > cachedChunk {
		return false
	}
	cached := false
	src.Conn.Control(func(sysfd uintptr) {
		var st unix.Cachestat_t
		r := unix.CachestatRange{Off: 0, Len: uint64(src.Size)}
		if unix.Cachestat(uint(sysfd), &r, &st, 0) == nil {
			page := uint64(os.Getpagesize())
			cached = st.Cache >= (uint64(src.Size)+page-1)/page
		}
	})
	return cached
}
