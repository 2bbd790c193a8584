//go:build linux

package splice

import (
	"context"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fd"
)

// viaPipe copies through an intermediate pipe. Invariant: the pipe is
// empty when a round starts; a round fills it with one splice from src
// (pipeRound) and drains all of it into dst (drainFilled).
//
// A pooled pipe is held only while bytes move: the fill takes one inside
// src's Conn.Read callback (so a wait for src's read lock, which another
// copy of the same src may hold while it waits for input, holds none),
// and the copy gives it back once it is empty: after the drain, before a
// buffer round, and before it parks on the netpoller for input (Go's
// internal/poll splices after arming the poll descriptor too, so no
// readiness is lost and no poll(2) is needed). Idle copies thus hold no
// pipe, and a bounded pool serves any number of them. A copy never waits
// for a pipe either: when none is free (every pipe holds bytes for a
// destination that does not read, say), the round goes through a
// userspace buffer, as io.Copy would, and the next round tries again. So
// a copy waits for room in dst holding a pipe only inside a drain, with
// the bytes dst has not taken: a stalled destination pins at most one
// pipe, and only while it holds bytes. Once they are delivered the next
// round reads at once, as Go's own splice loop does, without a wait for
// room first: a socket polls writable only well below full (unix: a
// quarter of its send buffer queued), and after such a wait the fill
// came before the next bytes could go, while dst ran dry
// (docs/benchmarks.md, "No wait for room between rounds"). A copy
// without a pool keeps the one pipe made for it throughout.
func (c *copier) viaPipe() (handled bool, err error) {
	defer func() { err = c.dropPipe(err) }()
	return c.run(c.pipeStep)
}

// pipeStep takes step st of viaPipe and returns the next one.
func (c *copier) pipeStep(st step) step {
	switch st {
	case stepRound:
		return c.pipeRound()
	case stepDrain:
		return c.drainFilled()
	case stepBuffer:
		c.putPipe() // the fill took it and moved nothing
		return c.bufferStep()
	}
	panic(fmt.Sprintf("splice: viaPipe reached step %d", st))
}

// pipeRound starts a round of viaPipe, holding no pool pipe: it checks
// the limit and the context and waits for the Pacer's grant; then it
// fills a pipe (fillPipe). It returns stepDrain when bytes are in the
// pipe, stepRound when a blocking src had no input for a poll slice,
// stepBuffer for a round splice cannot make, or how the copy ends.
func (c *copier) pipeRound() step {
	if !c.more() {
		return stepDone
	}
	if err := c.beginRound(); err != nil {
		return c.stop(err)
	}
	c.next, c.err = stepFail, nil
	if rerr := c.src.Conn.Read(c.fillFn); rerr != nil {
		return c.stop(rerr)
	}
	if c.next == stepFail {
		return c.fail(c.err)
	}
	return c.next
}

// fillPipe is viaPipe's src.Conn.Read callback: it splices from src into
// the (empty) pipe, taking one first if the copy holds none, and leaves
// in c.next what it found. On EAGAIN it gives the pipe back and parks on
// the netpoller (returns false).
//
// A socket source is probed with recv(MSG_PEEK) instead of a splice
// once a fill came back short, the usual end of a message (readProbe):
// the probe costs what the splice that answers EAGAIN would, and it also
// tells TCP's urgent mark, where splice answers EAGAIN (or 0) although
// input follows, from an empty socket. A splice that answers EAGAIN
// without a probe before it is checked with one; if input is there, the
// copy splices again (the input came after the splice), and if that
// answers EAGAIN with input there too (againUnmoved), the mark is
// crossed by a buffer round (stepBuffer). While a probe keeps finding
// input (a stream arriving in pieces), short fills go unprobed
// (readStream). A probe that fails fails the copy with its error, also
// one after a splice that answered EAGAIN: recv reports a socket's
// pending error (a reset that came after the splice) and clears it, and
// a read after it finds EOF where the reset was.
func (c *copier) fillPipe(fd uintptr) bool {
	if c.read == readProbe {
		c.read = readSplice
		switch n, e := peek(int(fd), &c.peekBuf); {
		case e == unix.EAGAIN:
			return c.srcEmpty(int(fd))
		case e != nil:
			c.next, c.err = stepFail, e
			return true
		case n == 0:
			c.next = stepDone
			return true
		}
		c.read = readStream // input came on: splice first until it stops
	}
	if c.noInput(int(fd)) {
		return c.srcEmpty(int(fd))
	}
	if c.p == nil {
		if c.p = takePipe(c.pool); c.p == nil {
			c.next = stepBuffer // no pipe is free
			return true
		}
	}
	chunk := c.chunk(c.p.size)
	c.noteOffset(int(fd))
	m, e := Splice(int(fd), nil, c.p.wfd, nil, chunk, FlagMove|FlagNonblock)
	switch {
	case m > 0:
		c.p.data += m
		c.readSrc(m)
		c.spent(m)
		c.next = stepDrain
		if m < chunk && c.src.socket() && c.read == readSplice {
			c.read = readProbe
		}
	case e == nil && c.src.unixStream:
		c.putPipe()
		c.next = stepDone // EOF
	case e == nil && c.src.socket():
		c.next = stepBuffer // EOF, or the urgent mark: read(2) tells
	case e == nil && c.mayReadMore(int(fd), c.srcOff): // srcOff: noteOffset ran
		c.next = c.splicedEmpty()
	case e == nil:
		c.next = stepDone
	case e == unix.EAGAIN:
		if c.src.socket() {
			if c.src.afterEmptySplice != nil {
				c.src.afterEmptySplice(int(fd))
			}
			switch n, e := peek(int(fd), &c.peekBuf); {
			case e == nil && n > 0 && c.againUnmoved():
				c.next = stepBuffer // input, yet EAGAIN twice: the urgent mark
				return true
			case e == nil && n > 0:
				// Input came after the splice: splice again.
				c.putPipe()
				c.next = stepRound
				return true
			case e != nil && e != unix.EAGAIN:
				// A reset after the splice, which the probe took:
				// a read would find EOF now.
				c.next, c.err = stepFail, e
				return true
			}
			c.read = readSplice // messages: probe after the next one
		}
		return c.srcEmpty(int(fd))
	default:
		c.next, c.err = stepFail, e
	}
	return true
}

// srcEmpty handles a src with no input: it gives the (empty) pipe back
// to the pool, and returns false (park on the netpoller) for a
// non-blocking src, else waits a poll(2) slice (stepRound). A copy whose
// context ended stops instead.
func (c *copier) srcEmpty(fd int) bool {
	c.putPipe()
	switch {
	case c.ctx.Err() != nil:
		c.next, c.err = stepFail, ctxError(c.ctx, nil)
	case c.src.pollable():
		return false
	default:
		pollFd(fd, unix.POLLIN, blockingPoll)
		c.next = stepRound
	}
	return true
}

// drainFilled drains the pipe a fill left bytes in, gives it back, and
// returns stepRound. When dst refuses the splice (fd.Refused: a refused
// splice moves nothing, so the bytes are still in the pipe), they are
// put back if they can be, by seeking a regular-file src back when
// nothing reached dst yet (stepRefused: the caller copies in
// userspace); otherwise drainRefused writes them and the copy goes on in
// buffer rounds. When the copy's context ended, what dst takes without
// waiting is still delivered.
func (c *copier) drainFilled() step {
	err := c.drain(c.p)
	if err == nil {
		c.putPipe() // the next fill takes one inside src's Read callback
		return stepRound
	}
	if errno, ok := err.(syscall.Errno); ok {
		if !fd.Refused(errno) {
			return c.stop(os.NewSyscallError("splice", errno))
		}
		if c.written == 0 && c.src.mode == unix.S_IFREG && c.seekBack(c.p.data) == nil {
			c.p.data, c.p.dirty = 0, true
			return stepRefused // the file offset is back where it was
		}
		return c.drainRefused()
	}
	if c.ctx.Err() != nil {
		c.flush(c.p)
	}
	return c.stop(err)
}

// drainRefused moves the bytes in the pipe, which dst refused to take by
// splice, with read(2) from the pipe and write(2) to dst through the
// copy's buffer (roundBuffer: io.Copy's size of bufferRound's), gives
// the emptied pipe back, and makes every later round of the copy a
// buffer round (stepUnspliced): bytes that left src are delivered, as
// io.Copy delivers them, or fail on dst's own write error. Bytes not
// delivered then (the rest of the buffer and of the pipe, the last ones
// read from src) are un-read or reported (unread).
//
// The pipe's last bytes are topped up by one read from src (topUp)
// before they are written: a pipe holds what the source's pages held, a
// length a buffer loop's read would not have returned (one page of a
// one-page pipe, a socket's fragment), and dst may refuse it (an
// O_DIRECT file takes only aligned lengths) where it takes the full
// buffer io.Copy would write.
func (c *copier) drainRefused() step {
	c.unspliced = true
	buf := c.roundBuffer()
	for c.p != nil {
		p := c.p
		n, err := readPipe(p, buf[:min(len(buf), p.data)])
		if err != nil {
			return c.stop(err) // p.data bytes left: dropPipe accounts for them
		}
		var eof bool
		var rerr error
		if p.data -= n; p.data == 0 {
			// Empty: given back before topUp, which may wait for
			// the Pacer (a wait for a grant holds no pipe).
			c.dropPipe(nil)
			m := 0
			m, eof, rerr = c.topUp(buf[n:], n)
			n += m
		}
		if left, err := c.writeAll(buf[:n]); err != nil {
			if c.ctx.Err() != nil {
				err = ctxError(c.ctx, err)
			}
			if p := c.p; p != nil {
				left += p.data
				p.data, p.dirty = 0, true
			}
			return c.stop(c.unread(left, err))
		}
		switch {
		case rerr != nil:
			return c.stop(rerr) // the pipe is back: nothing in flight
		case eof:
			return stepDone
		}
	}
	return stepUnspliced
}

// topUp reads from src into b, behind pending bytes read from src and
// not yet written, once, without waiting for input: as much as the limit
// leaves, none where src has no input or the copy's context ended (it
// only delivers what it holds). A paced copy waits for the Pacer to
// grant that much first (paceFor), as io.Copy's paced read of a buffer
// does: the tail of a grant is a length dst may refuse as it refused the
// pipe's. eof reports src's end, which may be told only once (a
// terminal's), and err a failure of the read, which a socket reports
// only once, or of the wait for the Pacer: each must be acted on after
// the pending bytes are written.
func (c *copier) topUp(b []byte, pending int) (n int, eof bool, err error) {
	max := c.chunkUnpaced(len(b)+pending) - pending
	if max <= 0 || c.ctx.Err() != nil {
		return 0, false, nil
	}
	if err := c.paceFor(max); err != nil {
		return 0, false, err
	}
	if c.src.Pacer != nil {
		max = min(max, c.budget)
	}
	n, eof, _, err = c.readBuffer(b[:max])
	return n, eof, err
}

// readPipe reads from the copy's pipe p, which holds bytes (p.data > 0),
// into b.
func readPipe(p *Pipe, b []byte) (int, error) {
	for {
		n, err := unix.Read(p.rfd, b)
		switch {
		case err == unix.EINTR:
			continue
		case n > 0:
			return n, nil
		case err == nil:
			err = io.ErrUnexpectedEOF
		}
		return 0, fmt.Errorf("splice: reading the pipe, which holds %d bytes: %w", p.data, os.NewSyscallError("read", err))
	}
}

// dropPipe gives back the pipe the copy holds when it ends: bytes still
// in it are un-read or reported in the returned error (see unread), and
// the pipe is then closed rather than pooled.
func (c *copier) dropPipe(err error) error {
	p := c.p
	if p == nil {
		return err
	}
	c.p = nil
	if p.data > 0 {
		left := p.data
		p.data, p.dirty = 0, true
		err = c.unread(left, err)
	}
	if c.pool != nil {
		c.pool.putClean(p) // the count is exact: no FIONREAD unless dirty
	} else {
		p.Close()
	}
	return err
}

// putPipe gives the copy's pipe, empty, back to its pool; a pipe made
// for a copy without a pool stays with the copy until it ends (dropPipe).
func (c *copier) putPipe() {
	if c.p != nil && c.pool != nil {
		c.pool.putClean(c.p) // empty: nobody else's bytes are in it
		c.p = nil
	}
}

// takePipe returns an empty pipe from pool, or nil where none is free or
// the kernel refuses one (see Pool.TryGet). A nil pool makes a pipe of
// DefaultPipeSize for the copy.
func takePipe(pool *Pool) *Pipe {
	if pool != nil {
		return pool.TryGet()
	}
	p, err := NewPipe(DefaultPipeSize)
	if err != nil {
		return nil
	}
	return p
}

// Drain splices the n bytes a caller put into p (by a splice of its own,
// such as an io_uring SPLICE into p) into dst, the way Copy drains its
// intermediate pipe. p must hold those n bytes and no others; Drain sets
// p's count (Buffered) to n before anything else.
//
// It returns once all n bytes reached dst (err == nil, p.Buffered() == 0)
// or at the first error; in every case written + p.Buffered() == n:
// written counts the bytes that reached dst, p.Buffered() those still in
// p (a pipe with bytes left is not pooled: Pool.Put closes it). dst.Conn
// is required; dst.Info, if set, spares the inspection of dst, and
// dst.Meter, if set, is told of the bytes as they arrive; the other End
// fields are ignored.
//
// Every splice runs inside dst's RawConn.Write callback. When dst has no
// room (EAGAIN), Drain waits on the netpoller for a non-blocking dst; it
// never spins. A blocking dst (one the netpoller does not watch) blocks
// inside splice(2) until it has room, unless a send timeout
// (BoundBlocking) makes it answer EAGAIN: Drain then waits in poll(2)
// slices. ctx is checked when dst has no room: once ctx has ended Drain
// returns instead of waiting. A wait already parked on the netpoller
// ends only when something wakes it: Drain does not call dst.Wake, so a
// caller whose ctx can end must arrange that (for example a write
// deadline in the past). Errors are those of Copy: the descriptor's,
// from Conn (closed: net.ErrClosed, or os.ErrClosed for an *os.File),
// an *os.SyscallError wrapping the errno (EPIPE, or EINVAL when
// dst refuses splice, before anything moved), or, when ctx ended, one
// for which errors.Is(err, ctx.Err()) holds. A p found empty while
// bytes of the n are still to come (it held fewer than n) ends Drain
// with an error wrapping io.ErrUnexpectedEOF instead of a wait for bytes
// that are not there.
//
// A call Drain cannot make fails at once, touching nothing (not even
// p's count): a nil p, or a nil dst or dst.Conn, or n < 0, with an error
// wrapping os.ErrInvalid; a closed p (or the zero Pipe), with one
// wrapping os.ErrClosed.
func Drain(ctx context.Context, dst *End, p *Pipe, n int) (written int64, err error) {
	if ctx == nil {
		ctx = context.Background()
	}
	switch {
	case p == nil:
		return 0, fmt.Errorf("splice: Drain from a nil pipe: %w", os.ErrInvalid)
	case !p.open:
		return 0, fmt.Errorf("splice: Drain from a closed pipe: %w", os.ErrClosed)
	case dst == nil || dst.Conn == nil:
		return 0, fmt.Errorf("splice: Drain into a nil Conn: %w", os.ErrInvalid)
	case n < 0:
		return 0, fmt.Errorf("splice: Drain of %d bytes: %w", n, os.ErrInvalid)
	}
	p.data = n
	c := newCopier(ctx, -1, dst, &End{})
	defer c.release()
	c.dst.apply(dst.Info)
	if !c.dst.known {
		if err := c.dst.inspect(); err != nil {
			return 0, fd.ClosedErr(err, dst.Conn, nil)
		}
	}
	err = c.drain(p)
	if errno, ok := err.(syscall.Errno); ok {
		err = os.NewSyscallError("splice", errno)
	}
	err = fd.ClosedErr(err, dst.Conn, nil)
	if err != nil && ctx.Err() != nil {
		err = ctxError(ctx, err) // a wait woken by Wake's deadline
	}
	return c.written, err
}

// drain splices everything in p into dst, waiting for room on the
// netpoller (in poll(2) slices for a blocking dst) while holding p: its
// bytes are this copy's. It returns nil only when p is empty.
func (c *copier) drain(p *Pipe) error {
	c.p = p
	for p.data > 0 {
		c.err = nil
		if werr := c.dst.Conn.Write(c.drainFn); werr != nil {
			return werr
		}
		if c.err != nil {
			return c.err
		}
		if p.data > 0 && c.ctx.Err() != nil {
			return ctxError(c.ctx, nil)
		}
	}
	return nil
}

// drainPipe is drain's dst.Conn.Write callback: it splices from the pipe
// until the pipe is empty, or dst has no room (it then parks on the
// netpoller, or waits a poll(2) slice for a blocking dst, unless the
// context ended), or a splice fails (c.err).
func (c *copier) drainPipe(fd uintptr) bool {
	p := c.p
	for p.data > 0 {
		m, e := Splice(p.rfd, nil, int(fd), nil, p.data, FlagMove|FlagNonblock)
		if m > 0 {
			p.data -= m
			c.delivered(m)
			continue
		}
		switch {
		case e == unix.EAGAIN && p.inKernel() == 0:
			// p is empty (a splice out of an empty pipe with writers
			// answers EAGAIN): it held fewer bytes than counted, which
			// only Drain's caller can get wrong. Waiting for dst would
			// spin, as dst has room.
			c.err = fmt.Errorf("splice: the pipe is empty with %d bytes still counted in it: %w", p.data, io.ErrUnexpectedEOF)
		case e == unix.EAGAIN:
			// p holds bytes, so dst has no room.
			if c.ctx.Err() != nil {
				c.err = ctxError(c.ctx, nil)
				return true
			}
			if c.dst.pollable() {
				return false
			}
			pollFd(int(fd), unix.POLLOUT, blockingPoll)
		case e == nil && p.inKernel() > 0:
			c.err = errTookNone // dst took none of them
		case e == nil:
			c.err = fmt.Errorf("splice: pipe reported %d bytes but gave none", p.data)
		default:
			c.err = e
		}
		return true
	}
	return true
}

// flush delivers what dst takes from p without waiting: used after ctx
// ended, when Conn.Write would fail on the deadline Wake set.
func (c *copier) flush(p *Pipe) {
	c.dst.Conn.Control(func(fd uintptr) {
		for p.data > 0 {
			m, e := Splice(p.rfd, nil, int(fd), nil, p.data, FlagMove|FlagNonblock)
			if m <= 0 || e != nil {
				return
			}
			p.data -= m
			c.delivered(m)
		}
	})
}
