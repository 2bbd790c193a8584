//go:build linux

package splice

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// direct splices src straight into dst, one of them being a pipe. Each
// round splices in a loop until a splice moves nothing; the step that
// this leads to (direct's loop state) says what the copy waits for, or
// how it ends.
//
// Both callbacks nest: dst.Write outside (spliceIntoDst), src.Read inside
// (spliceFromSrc). A wait for dst returns false from the outer callback
// (holding only dst's reference); a wait for src leaves both callbacks
// first, so that closing dst meanwhile neither blocks in Close nor goes
// unnoticed.
func (c *copier) direct() (handled bool, err error) {
	return c.run(c.directStep)
}

// directStep takes step st of direct and returns the next one.
func (c *copier) directStep(st step) step {
	switch st {
	case stepRound:
		return c.directRound()
	case stepBlocked:
		return c.afterBlocked()
	case stepWaitSrc:
		return c.waitSrc()
	case stepBuffer:
		return c.bufferStep()
	case stepRetry:
		return c.retry()
	}
	panic(fmt.Sprintf("splice: direct reached step %d", st))
}

// directRound splices until a splice moves nothing, or the limit or the
// Pacer's grant is reached, and returns what the copy does next. Waits
// for dst happen inside it; a wait for src is left to the caller
// (stepWaitSrc, stepBlocked).
func (c *copier) directRound() step {
	if !c.more() {
		return stepDone
	}
	if err := c.beginRound(); err != nil {
		return c.stop(err)
	}
	c.next, c.err = stepRound, nil
	if werr := c.dst.Conn.Write(c.dstFn); werr != nil && c.next != stepFail {
		c.next, c.err = stepFail, werr
		if errors.Is(werr, os.ErrDeadlineExceeded) && c.written == 0 && c.ctx.Err() == nil {
			// dst's own deadline, met before src was read: io.Copy
			// reads first, and src at EOF is a success there. A
			// buffer round reads: EOF ends the copy, bytes meet
			// the deadline (and are reported undelivered). Later
			// in the copy a deadline ends it with the bytes left
			// in src.
			c.next, c.err = stepBuffer, nil
		}
	}
	switch c.next {
	case stepFail:
		return c.fail(c.err)
	case stepRound:
		c.backoff = 0
	}
	return c.next
}

// spliceIntoDst is direct's dst.Conn.Write callback: it runs
// spliceFromSrc under src's reference and, when that found dst without
// room, waits for dst: on the netpoller (returning false) or, for a
// blocking dst, for one poll(2) slice. A copy whose context ended does
// not wait: its next round reports the end. It leaves in c.next what the
// round found.
func (c *copier) spliceIntoDst(wfd uintptr) bool {
	c.next, c.wfd = stepRound, int(wfd)
	if rerr := c.src.Conn.Read(c.srcFn); rerr != nil {
		c.next, c.err = stepFail, rerr
		return true
	}
	if c.next != stepWaitDst {
		return true
	}
	if c.ctx.Err() != nil {
		c.next = stepRound
		return true
	}
	c.lastWait = stepWaitDst
	if c.dst.pollable() {
		return false
	}
	pollFd(c.wfd, unix.POLLOUT, blockingPoll)
	c.next = stepRound
	return true
}

// spliceFromSrc is direct's src.Conn.Read callback: it splices from src
// into c.wfd, at most maxChunk bytes a call, until a splice moves
// nothing (c.next says why), the limit is reached (stepDone), or the
// Pacer's grant is used up (stepRound). It never waits.
func (c *copier) spliceFromSrc(rfd uintptr) bool {
	endWithBytes := false // the last splice answered 0 with bytes in src
	for c.more() {
		if c.src.Pacer != nil && c.budget == 0 {
			c.next = stepRound
			return true
		}
		n, e := 0, error(unix.EAGAIN)
		if !c.noInput(int(rfd)) {
			n, e = Splice(int(rfd), nil, c.wfd, nil, c.chunk(maxChunk), FlagMove|FlagNonblock)
		}
		if n > 0 {
			c.spent(n)
			c.delivered(n)
			endWithBytes = false
			continue
		}
		if c.src.afterEmptySplice != nil && (e == nil || e == unix.EAGAIN && c.src.socket()) {
			c.src.afterEmptySplice(int(rfd))
		}
		switch {
		case e == nil && c.src.unixStream:
			c.next = stepDone // EOF
		case e == nil && c.src.socket():
			c.next = stepBuffer // EOF, or TCP's urgent mark: read(2) tells
		case e == nil && c.src.pipe() && !c.dst.pipe() && holdsBytes(int(rfd)):
			// The pipe has bytes after a splice that found none: a
			// writer of a fifo came after the last one left (splice
			// again: it moves them), or, twice in a row, dst took
			// none (a file whose write(2) returns 0 too, as a FUSE
			// server's answer of 0 bytes written makes it).
			if !endWithBytes {
				endWithBytes = true
				continue
			}
			c.next, c.err = stepFail, errTookNone
		case e == nil && c.mayReadMore(int(rfd), -1): // not srcOff: not followed here
			c.next = c.splicedEmpty()
		case e == nil:
			c.next = stepDone
		case e == unix.EAGAIN && c.lastWait != stepWaitDst && c.src.pollable() && c.dst.pollable():
			c.next = stepBlocked // likely src: see awaitBlocked
		case e == unix.EAGAIN:
			c.next = c.blockedSide(int(rfd), c.wfd)
		case (e == unix.EPIPE && c.dst.pipe() || e == unix.EBADF) && c.written == 0:
			// A pipe without readers (EPIPE), or an end not open
			// for reading or writing (EBADF), fails the splice
			// before the kernel looks at src; io.Copy reads first,
			// and src at EOF is a success there. A buffer round
			// reads: EOF ends the copy, bytes meet the error in
			// write(2), a src not open for reading in read(2).
			// Later in the copy the error ends it with the bytes
			// left in src, as a deadline does.
			c.next = stepBuffer
		default:
			c.next, c.err = stepFail, e
		}
		return true
	}
	c.next = stepDone
	return true
}

// waitSrc waits for input on src (stepWaitSrc).
func (c *copier) waitSrc() step {
	c.backoff = 0
	c.lastWait = stepWaitSrc
	if err := c.wait(&c.src, false); err != nil {
		return c.stop(err)
	}
	return stepRound
}

// afterBlocked handles stepBlocked: it waits for the side awaitBlocked
// finds not ready.
func (c *copier) afterBlocked() step {
	st, err := c.awaitBlocked()
	if err != nil {
		return c.stop(err)
	}
	c.lastWait = stepWaitSrc
	if st == stepWaitDst {
		c.lastWait = stepWaitDst
		if err := c.wait(&c.dst, true); err != nil {
			return c.stop(err)
		}
		st = stepRound
	}
	if st == stepRound {
		c.backoff = 0
	}
	return st
}

// retry handles stepRetry: EAGAIN from a splice, yet both sides looked
// ready. Usually a side became ready between the splice and the poll
// (input arrived, an ACK freed socket space): the first retry after
// progress splices again at once. EAGAIN after EAGAIN with nothing moved
// in between (againUnmoved) is, from a socket src, TCP's urgent mark: a
// buffer round crosses it. Otherwise, or when that round finds nothing,
// the copy backs off before it splices again.
func (c *copier) retry() step {
	if !c.againUnmoved() {
		c.backoff = 0
		return stepRound
	}
	if c.src.socket() {
		eof, again, err := c.bufferRound()
		switch {
		case err != nil:
			return c.stop(err)
		case eof:
			return stepDone
		case !again:
			return stepRound
		}
	}
	c.backoff = min(max(2*c.backoff, 20*time.Microsecond), 5*time.Millisecond)
	time.Sleep(c.backoff)
	return stepRound
}

// awaitBlocked runs after EAGAIN from a direct splice whose two sides are
// on the netpoller, when the last wait was for src: inside src's
// Conn.Read, once its poll descriptor is armed, one poll(2) of both
// descriptors (dst's under a Control reference) tells which side is not
// ready, and the copy parks on src without a second poll. It returns
// stepRound once src is readable (after a wait), stepWaitDst when dst has
// no room, and stepRetry when both look ready. A closed dst is left for
// the next splice to report.
func (c *copier) awaitBlocked() (st step, err error) {
	first := true
	err = c.src.Conn.Read(func(sfd uintptr) bool {
		if !first {
			st = stepRound
			return true
		}
		first = false
		st = stepRound
		cerr := c.dst.Conn.Control(func(dfd uintptr) { st = notReady(int(dfd), int(sfd)) })
		switch {
		case cerr != nil:
			st = stepRound
		case st == stepWaitSrc && c.ctx.Err() == nil:
			return false
		case st == stepWaitSrc:
			st = stepRetry
		}
		return true
	})
	if err != nil && c.ctx.Err() != nil {
		err = ctxError(c.ctx, err)
	}
	return st, err
}

// blockedSide tells, after EAGAIN from a direct splice, which side is not
// ready: stepWaitDst, stepWaitSrc, or stepRetry when both look ready.
func (c *copier) blockedSide(rfd, wfd int) step {
	if c.src.inspectMode() != nil || c.dst.inspectMode() != nil {
		return stepRetry
	}
	switch {
	case c.src.neverWaits():
		return stepWaitDst
	case c.dst.neverWaits():
		return stepWaitSrc
	}
	return notReady(wfd, rfd)
}

// notReady polls wfd for room and rfd for input without waiting and
// returns stepWaitDst when wfd has no room, else stepWaitSrc when rfd has
// no input, else stepRetry. Error and hang-up count as ready (the next
// splice reports them), and so does a failed poll(2).
func notReady(wfd, rfd int) step {
	const bad = unix.POLLERR | unix.POLLHUP | unix.POLLNVAL
	fds := [2]unix.PollFd{{Fd: int32(wfd), Events: unix.POLLOUT}, {Fd: int32(rfd), Events: unix.POLLIN}}
	if _, err := unix.Poll(fds[:], 0); err != nil {
		return stepRetry
	}
	switch {
	case fds[0].Revents&(unix.POLLOUT|bad) == 0:
		return stepWaitDst
	case fds[1].Revents&(unix.POLLIN|bad) == 0:
		return stepWaitSrc
	}
	return stepRetry
}
