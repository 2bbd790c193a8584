package uring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/ctxerr"
	"github.com/pipes-go/pipes/internal/fd"
	"github.com/pipes-go/pipes/splice"
)

// File is the source of a ring copy: a regular file.
type File struct {
	// Conn gives access to the caller's descriptor. The copy pins it
	// (a registered-file slot, or a duplicate) under Conn.Control, and
	// reads each round under Conn.Read, which fails once the caller has
	// closed it.
	Conn syscall.RawConn
	Size int64  // the size fstat reported
	Dev  uint64 // the st_dev fstat reported; 0: unknown
}

// CopyReads runs one copy whose source is a regular file: the ring reads
// the file into an engine pipe (at most a pipe's worth per SQE, so a read
// never blocks on the pipe), and the pipe is drained into dst with
// splice(2) on the netpoller (splice.Drain). Reads that hit the page
// cache are spliced at once in the caller's goroutine instead. The file
// is pinned (fileRef) for the whole copy: io-wq resolves fd numbers when
// the work runs, and the caller's number may be closed and reused by
// then. Each round reads at the file's offset and moves it past what it
// read, under the caller's read lock, as read(2) of an *os.File does:
// copies sharing the file take disjoint bytes of it. At the end the
// offset is put back over bytes read into the pipe but not delivered
// (the copy failed or was cancelled), so that the next copy reads them
// again, unless another reader of the file moved it since: that reader
// took the bytes after them, and they are lost, as io.Copy loses bytes
// it read and could not write.
//
// When ctx can end, CopyReads calls interrupt once it holds a pipe and
// calls the stop it returns before it returns: interrupt must arrange for
// dst's waits to be woken when ctx ends (splice.Drain does not).
// handled == false means nothing moved: no pool pipe was free, the file
// could not be pinned, or the kernel cannot splice the pair.
func (d *Driver) CopyReads(ctx context.Context, dst *splice.End, src File, limit int64, interrupt func() (stop func())) (written int64, handled bool, err error) {
	cs, ok := d.begin(src)
	if !ok {
		return 0, false, nil
	}
	defer d.end(cs)
	if ctx.Done() != nil && interrupt != nil {
		defer interrupt()()
	}
	r := &readsCopy{d: d, ctx: ctx, dst: *dst, src: src, cs: cs, limit: limit}
	r.fillFn = r.fillLocked
	if err = r.run(); err == errRefused {
		return 0, false, nil
	}
	if uerr := r.unread(r.read - r.written); uerr != nil {
		if err == nil {
			err = uerr
		} else {
			err = fmt.Errorf("%w (%w)", err, uerr)
		}
	}
	return r.written, true, err
}

// errRefused reports, inside CopyReads, a pair the kernel cannot splice,
// met before any byte moved (and with the file offset where it was).
var errRefused = errors.New("splice refused")

// readsCopy is one CopyReads in progress. Between rounds its pipe is
// empty, and read - written bytes read from the file were not delivered
// (none but after a failed drain).
type readsCopy struct {
	d       *Driver
	ctx     context.Context
	dst     splice.End
	src     File
	cs      copySrc
	c       chain // the ring read of the round, when the page cache misses
	read    int64 // bytes read from the file into the pipe
	end     int64 // the file's offset after the last round's read
	limit   int64
	written int64

	// fillFn is fillLocked, the callback of src's Conn.Read that reads
	// a round; fill is its argument (bytes at most) and its result.
	fillFn func(uintptr) bool
	fill   struct {
		n   int
		res int32
		err error
	}
}

// run moves rounds of fill then drain until EOF, the limit, the caller
// closing the source (which the next round's Conn.Read reports), the end
// of ctx, or an error. ctx is checked before each round: a destination
// that never waits (/dev/null, a file, a descriptor in blocking mode)
// gives the interruption nothing to wake, and a round whose reads hit
// the page cache does not ask the ring.
func (r *readsCopy) run() error {
	for r.limit < 0 || r.written < r.limit {
		if r.ctx.Err() != nil {
			return ctxerr.Wrap("uring", r.ctx, nil)
		}
		n := r.cs.p.Size()
		if r.limit >= 0 && r.limit-r.written < int64(n) {
			n = int(r.limit - r.written)
		}
		res, ferr := r.fillRound(n)
		if ferr == errRefused {
			return ferr
		}
		if res > 0 {
			// Bytes read are delivered, even when the read ended
			// in a cancel: they are in the pipe.
			if err := r.drain(int(res)); err != nil {
				return err
			}
		}
		if ferr != nil || res == 0 {
			return ferr // an error (the caller closed the source), or EOF
		}
	}
	return nil
}

// fillRound reads up to n bytes at the file's offset into the empty
// pipe (fillLocked), under the caller's read lock, held for the round's
// read alone (another copy of the file waits for one read at most, never
// for this copy's destination). It returns the bytes read (0 at EOF),
// and errRefused for a first read the kernel refuses. A file the caller
// has closed fails matching os.ErrClosed (fd.ClosedErr), as its own Read
// does, whatever value holds it.
func (r *readsCopy) fillRound(n int) (int32, error) {
	r.fill.n = n
	if err := r.src.Conn.Read(r.fillFn); err != nil {
		return 0, fd.ClosedErr(err, r.src.Conn, nil)
	}
	return r.fill.res, r.fill.err
}

// fillLocked is fillRound's callback: it reads from the page cache in
// this goroutine (a read from the cache never blocks, and splice(2) here
// costs less than the hand-off to an io-wq worker), else through the
// ring, at the offset of sysfd, which it moves past the bytes read (the
// cached splice moves it itself; the ring's read, at an explicit
// offset, needs an lseek).
func (r *readsCopy) fillLocked(sysfd uintptr) bool {
	f := &r.fill
	f.res, f.err = 0, nil
	off, err := unix.Seek(int(sysfd), 0, io.SeekCurrent)
	if err != nil {
		f.err = &os.SyscallError{Syscall: "lseek", Err: err}
		return true
	}
	wfd := r.cs.p.WriteFd()
	res, cached := spliceCached(int(sysfd), off, wfd, f.n, r.src.Size)
	switch {
	case cached:
		r.d.st.CachedReads.Add(1)
	case r.d.Stalled():
		// The ring waits for a disk that stopped answering: read on
		// this thread, as io.Copy does, not behind that disk.
		res = spliceFile(int(sysfd), wfd, f.n)
	default:
		if res, f.err = r.d.spliceIn(r.ctx, &r.c, r.cs.f, off, wfd, f.n); res > 0 {
			if _, err := unix.Seek(int(sysfd), off+int64(res), io.SeekStart); err != nil && f.err == nil {
				f.err = &os.SyscallError{Syscall: "lseek", Err: err}
			}
		}
	}
	switch {
	case res > 0:
		r.read += int64(res)
		r.end = off + int64(res)
		f.res = res
	case res < 0 && f.err == nil:
		errno := syscall.Errno(-res)
		if r.read == 0 && fd.Refused(errno) {
			f.err = errRefused // not spliceable: the caller copies in userspace
		} else {
			f.err = &os.SyscallError{Syscall: "splice", Err: errno}
		}
	}
	return true
}

// unread moves the file's offset back over the n bytes read and not
// delivered, the last the copy read (fd.Unread): not where another
// reader of the file has moved it since (fd.ErrOffsetMoved). Bytes it
// cannot put back are lost, as io.Copy loses bytes it read and could
// not write, and the error says how many (a splice.UndeliveredError
// within it), as splice.Copy's does: the caller counts them as taken
// from the source. So are bytes of a file the caller has closed
// meanwhile: its offset, shared by any duplicate of the descriptor,
// stays after them.
func (r *readsCopy) unread(n int64) error {
	if n == 0 {
		return nil
	}
	if err := fd.Unread(r.src.Conn, r.end, n); err != nil {
		return fmt.Errorf("%w: %w", &splice.UndeliveredError{N: n}, fd.ClosedErr(err, r.src.Conn, nil))
	}
	return nil
}

// drain delivers the m bytes in the pipe to dst with splice(2) on the
// netpoller (splice.Drain), under Go's reference to the caller's
// descriptor; CopyReads' interrupt wakes its waits.
func (r *readsCopy) drain(m int) error {
	n, err := splice.Drain(r.ctx, &r.dst, r.cs.p, m)
	r.written += n
	if err != nil && r.written == 0 && errors.Is(err, unix.EINVAL) {
		// dst refuses splice (an O_APPEND file, some devices): nothing
		// moved; put the offset back and let the caller copy in
		// userspace. Only EINVAL here, not all of fd.Refused: kept as
		// it was.
		if r.unread(r.read) == nil {
			r.read = 0
			return errRefused
		}
	}
	return err
}

// Residency says where a file's range is with respect to the page cache.
type Residency int

const (
	// Missing: some page of the range is not in the page cache, or the
	// kernel cannot tell.
	Missing Residency = iota
	// Present: every page of the range is in the page cache; some may
	// still be being read, by readahead the kernel started earlier.
	Present
	// Cached: the range can be read without waiting for the disk.
	Cached
)

// PageCached reports whether the n bytes at off of the file fd, whose
// size was size, can be read without waiting for the disk: Cached by
// ChunkResidency, or Present and readable by the probe of readable.
func PageCached(fd int, off int64, n int, size int64) bool {
	switch ChunkResidency(fd, off, n, size) {
	case Cached:
		return true
	case Present:
		return readable(fd, off, n)
	}
	return false
}

// ChunkResidency tells where the n bytes at off of the file fd, whose
// size was size, are. It asks cachestat(2) (Linux 6.5), which counts the
// range's pages and starts no I/O: Missing or Present. Only where
// cachestat cannot tell (before Linux 6.5, or a range at or past size:
// the file may have grown) does it probe with readable: Cached or
// Missing.
func ChunkResidency(fd int, off int64, n int, size int64) Residency {
	if size > off {
		n = int(min(int64(n), size-off)) // cachestat counts only pages that exist
		if present, known := pagesPresent(fd, off, int64(n)); known {
			if present {
				return Present
			}
			return Missing
		}
	}
	if readable(fd, off, n) {
		return Cached
	}
	return Missing
}

// readable reports whether the first and last byte of the n bytes at off
// of fd can be read without waiting, by preadv2 with RWF_NOWAIT (Linux
// 4.14), which answers EAGAIN for a page that is missing or still being
// read. It is not free of I/O: where it meets a page that is missing, or
// that carries the kernel's readahead mark, it starts the next
// readahead on the calling thread, which can wait there for the disk
// queue's tags. Where the file system cannot tell (EOPNOTSUPP) it
// reports false.
func readable(fd int, off int64, n int) bool {
	if !readableAt(fd, off) {
		return false
	}
	last := off + int64(n) - 1
	if page := int64(os.Getpagesize()); last/page == off/page {
		return true // one page: one probe
	}
	return readableAt(fd, last)
}

// readableAt is readable for the one byte at off. It allocates nothing
// (x/sys's Preadv2 builds its iovecs on the heap): the iovec is on the
// stack, and the offset goes in two halves, pos_l and pos_h, as the
// kernel takes it (on 64-bit, pos_h is ignored).
func readableAt(fd int, off int64) bool {
	var b [1]byte
	iov := unix.Iovec{Base: &b[0]}
	iov.SetLen(1)
	for {
		_, _, e := unix.Syscall6(unix.SYS_PREADV2, uintptr(fd), uintptr(unsafe.Pointer(&iov)), 1,
			uintptr(off), uintptr(uint64(off)>>32), unix.RWF_NOWAIT)
		if e != unix.EINTR {
			return e == 0
		}
	}
}

// pagesPresent reports whether every page of the n bytes at off of fd is
// in the page cache, read or being read, by cachestat(2); known is false
// where the kernel cannot tell (no cachestat before Linux 6.5).
//
// cachestat counts the page cache's entries without its lock, and a
// count can miss one of the range's folios while the kernel works on the
// file (seen on Linux 6.18, on a loop device, right after the ring's
// READs of the range: 48 of its 64 pages, then 64 on the next call, none
// evicted between). So a page reported missing may be there; where that
// decides more than one chunk, the caller asks again (Warmer.readIn).
func pagesPresent(fd int, off, n int64) (present, known bool) {
	var st unix.Cachestat_t
	r := unix.CachestatRange{Off: uint64(off), Len: uint64(n)}
	if unix.Cachestat(uint(fd), &r, &st, 0) != nil {
		return false, false
	}
	page := int64(os.Getpagesize())
	return int64(st.Cache) >= (off+n+page-1)/page-off/page, true
}

// spliceCached splices up to n bytes of the caller's file sysfd, whose
// size was size, from its offset off into the pipe wfd when they are in
// the page cache (PageCached): ok is false, with nothing done, where
// they are not. The splice reads at the file's offset (nil: off must be
// it) and moves it past the bytes read. res is the byte count or
// -errno, as a CQE's.
func spliceCached(sysfd int, off int64, wfd int, n int, size int64) (res int32, ok bool) {
	if !PageCached(sysfd, off, n, size) {
		return 0, false
	}
	return spliceFile(sysfd, wfd, n), true
}

// spliceFile splices up to n bytes of the caller's file sysfd from its
// offset into the pipe wfd, moving the offset past them, on the calling
// thread. res is the byte count or -errno, as a CQE's.
func spliceFile(sysfd int, wfd int, n int) (res int32) {
	m, err := splice.Splice(sysfd, nil, wfd, nil, n, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	if err != nil {
		errno := unix.EIO
		errors.As(err, &errno)
		return -int32(errno)
	}
	return int32(m)
}

// copySrc is what a ring copy holds for its whole life: a pool pipe and
// its source file, pinned.
type copySrc struct {
	p *splice.Pipe
	f fileRef
}

// begin takes a pool pipe and pins src; ok is false, with nothing taken,
// where it cannot, and the caller then takes another path. A copy never
// waits for a pipe (another copy's peer may never read again). Nor does
// it fail for want of a pin: the other paths need no new descriptor
// where a duplicate cannot be had (EMFILE with the registered-file table
// full), and meet for themselves what else stopped the pin (a file the
// caller closed). The copy calls end once its last chain is done.
//
// Nor does it take a file the ring must not read (MayRead): on a
// file system whose reads wait for a server, a read that a silent server
// never answers would hold one of the ring's capped workers for as long,
// until the other copies' reads wait behind such reads; and where
// cachestat(2) does not count the file's pages, every round would look
// missing and go to a worker. The caller's own path reads such a file on
// the copy's thread, as io.Copy does.
func (d *Driver) begin(src File) (cs copySrc, ok bool) {
	if d.Stalled() || !MayRead(src.Conn) {
		return cs, false
	}
	cs.p = d.pool.TryGet()
	if cs.p == nil {
		return cs, false
	}
	var err error
	if cs.f, err = d.pin(src.Conn); err != nil {
		d.pool.Put(cs.p)
		return cs, false
	}
	return cs, true
}

// end releases what begin took. The pipe is closed, not pooled, if
// bytes are left in it, and once the ring has broken (fail): the chains
// in flight then were completed without their CQEs, and an op of one
// may still run on an io-wq worker and write into the pipe after it.
func (d *Driver) end(cs copySrc) {
	d.unpin(cs.f)
	d.mu.Lock()
	broken := d.broken != nil
	d.mu.Unlock()
	if broken {
		cs.p.Close()
		return
	}
	d.pool.Put(cs.p)
}

// MayRead reports whether the ring may read the file behind c, and
// tell by cachestat(2) which of its chunks it must read: not where the
// file system's reads wait for a server (remoteType: a read the server
// never answers would hold one of the ring's workers, which every copy
// shares), nor where cachestat does not count the file's pages
// (uncountedType: every chunk would look missing, however often it was
// read), nor where fstatfs(2) cannot name the file system (a FUSE server
// that does not answer it), nor for a file the caller has closed.
func MayRead(c syscall.RawConn) bool {
	ok := false
	c.Control(func(sysfd uintptr) {
		var st unix.Statfs_t
		if unix.Fstatfs(int(sysfd), &st) == nil {
			ok = !remoteType(uint32(st.Type)) && !uncountedType(uint32(st.Type))
		}
	})
	return ok
}

// remoteType reports whether a file system of the type typ (statfs's
// f_type) reads from a server, local or across the network, that may
// never answer: FUSE (sshfs, s3fs, virtiofs), NFS, SMB, 9p, Ceph, AFS,
// Coda. Such a read, on an io-wq worker, holds the worker until the
// server answers.
func remoteType(typ uint32) bool {
	switch typ {
	case unix.FUSE_SUPER_MAGIC, unix.NFS_SUPER_MAGIC, unix.SMB_SUPER_MAGIC,
		unix.SMB2_SUPER_MAGIC, unix.CIFS_SUPER_MAGIC, unix.V9FS_MAGIC,
		unix.CEPH_SUPER_MAGIC, unix.AFS_SUPER_MAGIC, unix.AFS_FS_MAGIC,
		unix.CODA_SUPER_MAGIC:
		return true
	}
	return false
}

// uncountedType reports whether a file system of the type typ (statfs's
// f_type) keeps its files' bytes where cachestat(2) does not count
// them, so that every chunk of such a file looks Missing however often
// it was read (a Warmer would read each into the guard, then again
// through the scratch buffer; a ring copy would send each round to a
// worker): overlayfs, whose files' pages are the backing file's (and
// whose preadv2 RWF_NOWAIT answers EOPNOTSUPP, so no probe tells
// either); file systems with no page cache (procfs, sysfs, debugfs,
// tracefs, securityfs, cgroup, bpf, efivarfs, pstore); and tmpfs, which
// reads a hole from the zero page without putting a page in the cache
// (a sparse file's holes stay Missing), refuses preadv2 RWF_NOWAIT
// (EOPNOTSUPP: no probe finds a page readable), and whose other pages
// are in memory or swap: no device readahead for a Warmer to run ahead
// of.
func uncountedType(typ uint32) bool {
	switch typ {
	case unix.OVERLAYFS_SUPER_MAGIC, unix.TMPFS_MAGIC,
		unix.PROC_SUPER_MAGIC, unix.SYSFS_MAGIC, unix.DEBUGFS_MAGIC,
		unix.TRACEFS_MAGIC, unix.SECURITYFS_MAGIC, unix.CGROUP_SUPER_MAGIC,
		unix.CGROUP2_SUPER_MAGIC, unix.BPF_FS_MAGIC, unix.EFIVARFS_MAGIC,
		unix.PSTOREFS_MAGIC:
		return true
	}
	return false
}
