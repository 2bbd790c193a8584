package uring

import (
	"context"
	"os"
	"syscall"

	"github.com/pipes-go/pipes/internal/fd"
)

// Warmer keeps a copy from a regular file off the disk: it is the
// splice.Pacer of a sendfile(2) or splice(2) copy that, before each chunk
// the copy reads, checks whether the chunk is in the page cache
// (ChunkResidency) and, where it is not, has the ring read it in first
// (warm), so that the copy's goroutine never blocks an OS thread on the
// disk. A chunk whose pages the kernel's readahead is still reading is
// not read again: the ring waits for its last page, 4 KiB into the
// scratch buffer rather than the chunk. A chunk is at most cachedChunk, and the scratch buffer's size
// (Config.WarmChunk) where the ring reads it in: it also bounds how long
// one sendfile(2) or splice(2) call of the copy runs.
//
// The ring reads a chunk with IORING_OP_READ into the driver's scratch
// buffer, which nothing reads: on a file system with asynchronous
// buffered reads the read takes no io-wq worker (the kernel starts the
// disk reads, with its readahead, and completes the op from task work),
// so any number of copies have reads in flight at once without a thread
// each. The copy then sends the chunk from the page cache; the bytes
// cross into the scratch buffer once, which is the price.
//
// The copy must read the file from the offset the Warmer was made at, in
// order, and give back what it did not read (Refund), as a copy does
// with its Pacer; the Warmer then knows the offset of every chunk
// without asking the kernel. Close releases the Warmer once the copy
// is done.
type Warmer struct {
	d       *Driver
	src     syscall.RawConn
	off     int64 // offset of the next byte to grant
	size    int64 // past it the copy meets EOF: nothing to warm
	refused bool  // the kernel cannot read the file through the ring: warm no more
	// pin names the file in the chains, from the first chunk the
	// Warmer reads in until Close: one slot update per copy, not two per
	// chunk. nil: not pinned yet.
	pin *fileRef
}

const (
	// cachedChunk bounds a chunk found in the page cache: the chunk of
	// splice.Sendfile.
	cachedChunk = 4 << 20
	// DefaultWarmChunk is the Config.WarmChunk the engine uses.
	DefaultWarmChunk = 1 << 20
)

// NewWarmer returns a Warmer for a copy from the file src, which starts
// at the file's offset; nil, with no error, where the driver has no
// Warmers (Config.WarmChunk 0) or the copy has nothing to warm: a small
// file wholly in the page cache (smallCached).
func (d *Driver) NewWarmer(src File) (*Warmer, error) {
	if d.scratch == nil {
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
	return &Warmer{d: d, src: src.Conn, off: off, size: src.Size}, nil
}

// Take grants the next chunk, at most most bytes (what the copy has left
// to read), once it is in the page cache. It fails only when ctx
// ends, or the driver is closed, while the ring reads the chunk in. Any
// other failure to read the chunk in is left to the copy, whose own read
// meets it.
func (w *Warmer) Take(ctx context.Context, most int) (int, error) {
	n := min(most, cachedChunk)
	left := min(int64(n), w.size-w.off) // what the copy can read of it
	if left <= 0 || w.refused {
		w.off += int64(n)
		return n, nil
	}
	off, m := w.off, int64(0) // the range the ring reads in
	switch w.residency(int(left)) {
	case Missing:
		// Read in one scratch buffer's worth, and grant that.
		n = min(n, len(w.d.scratch))
		m = min(int64(n), left)
	case Reading:
		// Every page is there and the kernel's readahead is reading
		// some: wait for the chunk's last page, read in order.
		page := int64(os.Getpagesize())
		off = (w.off + left - 1) / page * page
		m = w.off + left - off
	}
	if m > 0 && w.pinned() {
		r, err := w.d.warm(ctx, *w.pin, off, int(m))
		if err != nil {
			return 0, err
		}
		w.refused = r < 0 && fd.Refused(syscall.Errno(-r))
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

// residency tells where the n bytes at the Warmer's offset are
// (ChunkResidency). A file the caller has closed counts as Cached: the
// copy's own read reports the close.
func (w *Warmer) residency(n int) Residency {
	res := Cached
	w.src.Control(func(sysfd uintptr) {
		res = ChunkResidency(int(sysfd), w.off, n, w.size)
	})
	if res == Cached {
		w.d.st.CachedReads.Add(1)
	}
	return res
}

// warm has the ring read the n bytes at off of the caller's file, pinned
// as f, into the scratch buffer while the calling goroutine sleeps on
// the read. It returns the read's result (bytes, or -errno), and fails
// only when ctx ends or the driver is closed first; a read cancelled by
// ctx is still waited for, so that the pin outlives it.
func (d *Driver) warm(ctx context.Context, f fileRef, off int64, n int) (int32, error) {
	var c chain
	c.reset(1)
	c.ops[0].prepRead(f, off, d.scratch[:min(n, len(d.scratch))])
	d.st.Warms.Add(1)
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
	return c.ops[0].res, err
}

// initWarm sets up what Warmers need: the scratch buffer their reads
// land in, shared by all (the bytes in it are never read). size <= 0:
// no Warmers.
func (d *Driver) initWarm(size int) {
	if size > 0 {
		d.scratch = make([]byte, size)
	}
}

// smallCached reports whether src is a file of at most cachedChunk bytes
// all of whose pages are in the page cache, by one cachestat(2) (Linux
// 6.5) over the whole file, which needs no offset. A copy of it has
// nothing to warm, so it costs one system call where the Warmer's first
// chunk would cost four (lseek, then PageCached's cachestat and a probe
// at both ends). false where the kernel cannot tell: the Warmer then
// probes chunk by chunk.
func smallCached(src File) bool {
	if src.Size <= 0 || src.Size > cachedChunk {
		return false
	}
	cached := false
	src.Conn.Control(func(sysfd uintptr) {
		present, known := pagesPresent(int(sysfd), 0, src.Size)
		cached = known && present
	})
	return cached
}
