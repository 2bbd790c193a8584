package uring

import (
	"context"
	"errors"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fd"
	"github.com/pipes-go/pipes/splice"
)

// File is the source of a ring copy: a regular file.
type File struct {
	// Conn gives access to the caller's descriptor. The copy pins it
	// with a duplicate under Conn.Control and then checks, between
	// rounds, that the caller has not closed it.
	Conn syscall.RawConn
	Size int64 // the size fstat reported
}

// linkedCheckEvery is how long a linked copy waits for its chain before it
// checks, from Go, that the caller has not closed dst or let its write
// deadline pass: the ring's POLL_ADD holds our duplicate of the socket
// and would wait on a peer that does not read however the caller's
// descriptor is used.
const linkedCheckEvery = 20 * time.Millisecond

// CopyLinked runs one copy from a regular file to a stream socket wholly
// on the ring: each round is one chain, SPLICE file -> pipe, POLL_ADD
// (POLLOUT) on the socket, SPLICE pipe -> socket, joined by
// IOSQE_IO_HARDLINK, so a short read or write does not break it. The two
// splices run on io-wq workers (capped by IORING_REGISTER_IOWQ_MAX_WORKERS)
// and the poll in the kernel: the copy's goroutine sleeps on a channel
// for a whole pipe's worth of bytes and no Go thread runs a splice. Both
// descriptors are pinned by duplicates for the whole copy.
//
// A write the socket takes only in part leaves bytes in the pipe; the
// next round reads less and writes them first. EOF is the size fstat
// reported, checked again when the copy gets there (as a read would see
// bytes appended meanwhile). Cancellation, a Close of either end by the
// caller, and dst's write deadline passing (noticed between rounds, and at
// least every linkedCheckEvery while a round waits) cancel the chain. The
// file offset ends after the last byte delivered, as for CopyReads.
// dst.Meter, if set, counts the bytes delivered.
//
// handled == false means nothing moved: no pool pipe was free, or the
// kernel cannot splice the pair; the caller takes another path.
func (d *Driver) CopyLinked(ctx context.Context, dst splice.End, src File, limit int64) (written int64, handled bool, err error) {
	// A chain holds its pipe for the whole copy: never wait for one
	// (another copy's peer may never read again); without one, the
	// caller takes another path.
	p := d.pool.TryGet()
	if p == nil {
		return 0, false, nil
	}
	defer d.pool.Put(p) // closed, not pooled, if bytes are left in it
	sfd, off, err := fd.PinFile(src.Conn)
	if err != nil {
		return 0, true, err
	}
	defer unix.Close(sfd)
	dfd, err := fd.Pin(dst.Conn)
	if err != nil {
		return 0, true, err
	}
	defer unix.Close(dfd)
	start := off
	defer func() {
		if _, serr := unix.Seek(sfd, start+written, io.SeekStart); serr != nil && err == nil {
			err = &os.SyscallError{Syscall: "lseek", Err: serr}
		}
	}()

	var (
		c      chain
		timer  *time.Timer
		inPipe int  // bytes read into p, not yet written to dst
		eof    bool // the last read returned 0, or off reached size
		size   = src.Size
		page   = os.Getpagesize()
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if err := checkEnds(dst, src); err != nil {
			return written, true, err
		}
		if !eof && off >= size {
			// At the size fstat reported: EOF, unless the file has
			// grown since (one fstat instead of a round that reads 0).
			var st unix.Stat_t
			if unix.Fstat(sfd, &st) == nil {
				size = st.Size
			}
			eof = off >= size
		}
		n := 0 // bytes to read this round
		if !eof {
			n = p.Size()
			if inPipe > 0 {
				// The bytes left over may straddle one more page
				// slot than their size fills.
				n -= (inPipe/page + 2) * page
			}
			if limit >= 0 {
				n = int(min(int64(n), limit-written-int64(inPipe)))
			}
			n = max(n, 0)
		}
		if n == 0 && inPipe == 0 {
			return written, true, nil // EOF, or limit reached
		}
		if n > 0 {
			c.reset(3)
			c.ops[0].prepSplice(sfd, off, p.WriteFd(), n)
		} else {
			c.reset(2)
		}
		c.hardlink = true
		c.ops[len(c.ops)-2].prepPoll(dfd, unix.POLLOUT)
		c.ops[len(c.ops)-1].prepSplice(p.ReadFd(), -1, dfd, p.Size())
		if err := d.submitChain(&c); err != nil {
			return written, true, err
		}
		werr := d.waitChain(ctx, &c, dst, src, &timer)

		var rerr error
		if n > 0 {
			switch r := c.ops[0].res; {
			case r > 0:
				off += int64(r)
				inPipe += int(r)
			case r == 0:
				eof = true
			case r == -int32(unix.ECANCELED):
			default:
				errno := syscall.Errno(-r)
				if off == start && written == 0 && inPipe == 0 && fd.Refused(errno) {
					return 0, false, nil // not spliceable: the caller copies in userspace
				}
				rerr = &os.SyscallError{Syscall: "splice", Err: errno}
			}
		}
		switch w := c.ops[len(c.ops)-1].res; {
		case w > 0:
			written += int64(w)
			inPipe -= int(w)
			if dst.Meter != nil {
				dst.Meter.Add(int64(w))
			}
		case w == 0, w == -int32(unix.EAGAIN), w == -int32(unix.ECANCELED):
			// Nothing moved: the pipe was empty, the socket full, or the
			// chain cancelled.
		default:
			if werr == nil {
				werr = &os.SyscallError{Syscall: "splice", Err: syscall.Errno(-w)}
			}
		}
		if werr != nil {
			return written, true, werr
		}
		if rerr != nil {
			return written, true, rerr
		}
	}
}

// waitChain waits for c to complete. When ctx is done, or the caller has
// closed dst or src or dst's write deadline has passed, it cancels c, still
// waits for it (its fds and pipe must outlive it), and returns why.
func (d *Driver) waitChain(ctx context.Context, c *chain, dst splice.End, src File, timer **time.Timer) error {
	if *timer == nil {
		*timer = time.NewTimer(linkedCheckEvery)
	} else {
		(*timer).Reset(linkedCheckEvery)
	}
	var err error
wait:
	for {
		select {
		case <-c.done:
			return nil
		case <-ctx.Done():
			err = context.Cause(ctx)
			break wait
		case <-(*timer).C:
			if err = checkEnds(dst, src); err != nil {
				break wait
			}
			(*timer).Reset(linkedCheckEvery)
		}
	}
	d.cancelChain(c)
	<-c.done
	return err
}

// checkEnds reports whether the caller has closed dst or src, or let
// dst's write deadline pass: the errors a blocked Write or Read would
// return (net.ErrClosed, os.ErrClosed, os.ErrDeadlineExceeded). It takes
// and releases Go's write lock of dst, and never waits.
func checkEnds(dst splice.End, src File) error {
	if err := dst.Conn.Write(func(uintptr) bool { return true }); err != nil {
		return err
	}
	return src.Conn.Control(func(uintptr) {})
}

// CopyReads runs one copy whose source is a regular file: the ring reads
// the file into an engine pipe (at most a pipe's worth per SQE, so a read
// never blocks on the pipe), and the pipe is drained into dst with
// splice(2) on the netpoller (splice.Drain). Reads that hit the page
// cache are spliced at once in the caller's goroutine instead. The file
// is pinned by a duplicate descriptor for the whole copy: io-wq resolves
// fd numbers when the work runs, and the caller's number may be closed
// and reused by then. The file offset is read at the start and, at the
// end, left after the last byte delivered to dst: bytes read into the
// pipe but not delivered (the copy failed or was cancelled) are read again
// by the next copy.
//
// When ctx can end, CopyReads calls interrupt once it holds a pipe and
// calls the stop it returns before it returns: interrupt must arrange for
// dst's waits to be woken when ctx ends (splice.Drain does not).
// handled == false means nothing moved: no pool pipe was free, or the
// kernel cannot splice the pair.
func (d *Driver) CopyReads(ctx context.Context, dst splice.End, src File, limit int64, interrupt func() (stop func())) (written int64, handled bool, err error) {
	p := d.pool.TryGet() // never wait for a pipe, as CopyLinked
	if p == nil {
		return 0, false, nil
	}
	defer d.pool.Put(p) // closed, not pooled, if bytes are left in it
	sfd, off, err := fd.PinFile(src.Conn)
	if err != nil {
		return 0, true, err
	}
	defer unix.Close(sfd)
	start := off
	if ctx.Done() != nil && interrupt != nil {
		defer interrupt()()
	}
	var c chain
	for limit < 0 || written < limit {
		n := p.Size()
		if limit >= 0 && limit-written < int64(n) {
			n = int(limit - written)
		}
		var res int32
		var cerr error
		if PageCached(sfd, off, n) {
			// A read from the page cache never blocks: splice(2) here
			// costs less than the hand-off to an io-wq worker.
			res = spliceAt(sfd, off, p.WriteFd(), n)
			d.st.CachedReads.Add(1)
		} else {
			res, cerr = d.spliceIn(ctx, &c, sfd, off, p.WriteFd(), n)
		}
		if res > 0 {
			off += int64(res)
		}
		if cerr == nil && res < 0 {
			errno := syscall.Errno(-res)
			if off == start && fd.Refused(errno) {
				return 0, false, nil // not spliceable: the caller copies in userspace
			}
			cerr = &os.SyscallError{Syscall: "splice", Err: errno}
		}
		if res > 0 {
			// splice(2) on the netpoller, under Go's reference to the
			// caller's descriptor; interrupt wakes its waits.
			m, derr := splice.Drain(ctx, dst, p, int(res))
			written += m
			if derr != nil && written == 0 && errors.Is(derr, unix.EINVAL) {
				// dst refuses splice (an O_APPEND file, some devices):
				// nothing moved; put the offset back and let the
				// caller copy in userspace. Only EINVAL here, not
				// all of fd.Refused: kept as it was (no behaviour
				// change in the re-cut).
				if _, serr := unix.Seek(sfd, start, io.SeekStart); serr == nil {
					return 0, false, nil
				}
			}
			if derr != nil {
				err = derr
				break
			}
		}
		if cerr != nil {
			err = cerr
			break
		}
		if res == 0 {
			break // EOF
		}
		if cerr := src.Conn.Control(func(uintptr) {}); cerr != nil {
			err = cerr // the caller closed the source
			break
		}
	}
	if _, serr := unix.Seek(sfd, start+written, io.SeekStart); serr != nil && err == nil {
		err = &os.SyscallError{Syscall: "lseek", Err: serr}
	}
	return written, true, err
}

// PageCached reports whether the first and last bytes of the n bytes at
// off of the file fd are in the page cache (preadv2 with RWF_NOWAIT, Linux
// 4.14, answers EAGAIN otherwise). Where the file system cannot tell
// (EOPNOTSUPP) it reports false, and the read goes to the ring.
func PageCached(fd int, off int64, n int) bool {
	var b [1]byte
	iov := [][]byte{b[:]}
	for _, o := range [2]int64{off, off + int64(n) - 1} {
		if _, err := unix.Preadv2(fd, iov, o, unix.RWF_NOWAIT); err != nil {
			return false
		}
	}
	return true
}

// spliceAt splices up to n bytes of the file fd at off into the pipe
// wfd, returning the byte count or -errno, as a CQE would.
func spliceAt(fd int, off int64, wfd int, n int) int32 {
	m, err := splice.Splice(fd, &off, wfd, nil, n, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	if err != nil {
		errno := unix.EIO
		errors.As(err, &errno)
		return -int32(errno)
	}
	return int32(m)
}
