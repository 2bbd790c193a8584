//go:build linux

package splice

import (
	"context"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fd"
)

// sendfileChunk bounds one sendfile(2) call, and so how long a cancelled
// copy goes on before it checks its context.
const sendfileChunk = 4 << 20

// Sendfile copies up to limit bytes (limit < 0: until EOF) from the
// regular file src, from its offset (which it leaves after the last byte
// sent), to the stream socket dst with sendfile(2): one system call per
// chunk where file -> pipe -> socket needs two. It waits for room in dst
// on the netpoller inside dst's Conn.Write (in poll(2) slices for a
// blocking dst, whose kernel waits are bounded as Copy bounds them), and
// ends as Copy does when ctx ends or either end is closed. handled is
// false, with nothing sent, where the file system has no sendfile
// (EINVAL, ENOSYS, EOPNOTSUPP), where src sends as empty while read(2)
// reads bytes of it (see Copy), or where an End or its Conn is nil;
// errors are otherwise those of Copy. Like Copy, it reads *dst and *src
// when it starts and keeps neither.
func Sendfile(ctx context.Context, dst, src *End, limit int64) (written int64, handled bool, err error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if dst == nil || src == nil || dst.Conn == nil || src.Conn == nil {
		return 0, false, nil
	}
	if limit == 0 {
		return 0, true, nil
	}
	c := newCopier(ctx, limit, dst, src)
	handled, err = c.sendfileCopy()
	written = c.written
	c.release()
	return written, handled, err
}

// sendfileCopy is Sendfile once c holds its ends.
func (c *copier) sendfileCopy() (handled bool, err error) {
	c.src.apply(c.src.Info)
	c.dst.apply(c.dst.Info)
	if err := c.dst.inspect(); err != nil {
		return true, fd.ClosedErr(err, c.dst.Conn, nil)
	}
	if err := c.ctx.Err(); err != nil {
		return true, ctxError(c.ctx, nil)
	}
	c.runSendfile()
	if c.next == stepRefused {
		return false, nil // nothing sent: see readsMore
	}
	err = c.err
	if errno, ok := err.(syscall.Errno); ok {
		if c.written == 0 && fd.Refused(errno) {
			return false, nil
		}
		err = os.NewSyscallError("sendfile", errno)
	}
	err = fd.ClosedErr(err, c.src.Conn, c.dst.Conn)
	if err != nil && c.ctx.Err() != nil {
		err = ctxError(c.ctx, err)
	}
	return true, err
}

// runSendfile runs sendfile and undoes what the copy set up for itself
// before it returns (its defers open-coded, as moveBytes's).
func (c *copier) runSendfile() {
	c.wakeOnDone()
	defer c.stopWake()
	defer c.dst.boundBlocking(unix.SO_SNDTIMEO)()
	defer c.refund()
	c.sendfile()
}

// sendfile sends from src until EOF or the limit, one sendfile(2) call
// a round (sendLocked), and leaves any error in c.err. Where dst has no
// room it waits for room (wait) holding neither end's lock.
//
// With a Gate on src and a non-blocking dst, the calls of each grant of
// src's Pacer (of each round, without one) take turns of the Gate until
// the copy first waits for room: what the Pacer found of the chunk when
// it granted it (in the page cache, say) may no longer hold after a
// wait, and the calls after one are as short as the room a slow peer
// makes.
func (c *copier) sendfile() {
	for c.more() {
		if c.ctx.Err() != nil {
			c.err = ctxError(c.ctx, nil)
			return
		}
		if c.budget == 0 {
			c.takeTurns = c.src.Gate != nil && c.dst.pollable()
		}
		if c.err = c.pace(); c.err != nil {
			return
		}
		c.next = stepRound
		if rerr := c.src.Conn.Read(c.sendFn); rerr != nil {
			c.err = rerr // the caller closed src
			return
		}
		switch c.next {
		case stepWaitDst:
			c.takeTurns = false
			if c.err = c.wait(&c.dst, true); c.err != nil {
				return
			}
		case stepDone, stepRefused, stepFail:
			return
		}
	}
}

// sendLocked is sendfile's src.Conn.Read callback: it makes one
// sendfile(2) call (sendOne) inside dst's Conn.Write, and leaves in
// c.next what the call found. So the call runs under src's read lock,
// as read(2) of an *os.File and io.Copy's sendfile(2) do, and copies
// (and reads) sharing one *os.File take disjoint bytes of it:
// sendfile(2) alone moves the offset without the kernel's f_pos lock.
// The locks are taken in the order Go's own sendfile takes them (net's
// sendFile, os.File.WriteTo: the source's read lock, then the
// destination's write lock), so that this copy and an io.Copy of the
// same file into the same socket cannot each hold the lock the other
// waits for. This copy holds them for one call, never while it waits
// for room in dst: another reader of the file waits for one call at
// most, not for this copy's destination (unless another writer of dst
// holds dst's lock meanwhile, as with io.Copy).
func (c *copier) sendLocked(sfd uintptr) bool {
	c.sfd = int(sfd)
	if werr := c.dst.Conn.Write(c.chunkFn); werr != nil {
		c.next, c.err = stepFail, werr // the caller closed dst
	}
	return true
}

// sendOne is sendLocked's dst.Conn.Write callback: one sendfile(2) of
// at most a chunk from src's offset into dfd (a nil offset: the kernel
// reads at the offset and moves it past what it sent). It leaves in
// c.next stepWaitDst when dst had no room, stepDone at EOF, stepFail
// (c.err) on failure, else stepRound; it never waits for room. A call
// that takes a turn of src's Gate (sendfile) takes it here, holding
// both ends' locks, and gives it back as soon as the call returns: a
// turn is held only by a call under way, never by a copy waiting for
// a lock (which could wait for another user's peer); a wait for a turn
// ends when ctx does.
func (c *copier) sendOne(dfd uintptr) bool {
	if c.takeTurns {
		entered, err := c.src.Gate.Enter(c.ctx)
		if err != nil {
			c.next, c.err = stepFail, fmt.Errorf("splice: gate: %w", err)
			if c.ctx.Err() != nil {
				c.err = ctxError(c.ctx, err)
			}
			return true
		}
		if entered {
			defer c.src.Gate.Leave()
		}
	}
	for {
		m, e := unix.Sendfile(int(dfd), c.sfd, nil, c.chunk(sendfileChunk))
		if m > 0 {
			c.spent(m)
			c.delivered(m)
		}
		switch {
		case e == unix.EINTR:
			continue
		case e == unix.EAGAIN:
			c.next = stepWaitDst
		case e != nil:
			c.next, c.err = stepFail, e
		case m == 0 && c.written == 0 && fd.ReadsMore(c.sfd):
			c.next = stepRefused // see readsMore
		case m == 0:
			c.next = stepDone
		}
		return true
	}
}
