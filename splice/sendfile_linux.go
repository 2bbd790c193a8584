//go:build linux

package splice

import (
	"context"
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
// (EINVAL, ENOSYS, EOPNOTSUPP); errors are otherwise those of Copy.
func Sendfile(ctx context.Context, dst, src End, limit int64) (written int64, handled bool, err error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if limit == 0 {
		return 0, true, nil
	}
	c := newCopier(ctx, limit, dst, src)
	defer c.release()
	c.src.apply(src.Info)
	c.dst.apply(dst.Info)
	if err := c.dst.inspect(); err != nil {
		return 0, true, err
	}
	if err := ctx.Err(); err != nil {
		return 0, true, ctxError(ctx, nil)
	}
	c.wakeOnDone()
	defer c.stopWake()
	defer c.dst.boundBlocking(unix.SO_SNDTIMEO)()
	defer c.refund()
	handled = true
	c.sendfile()
	err = c.err
	if errno, ok := err.(syscall.Errno); ok {
		if c.written == 0 && fd.Refused(errno) {
			return 0, false, nil
		}
		err = os.NewSyscallError("sendfile", errno)
	}
	if err != nil && ctx.Err() != nil {
		err = ctxError(ctx, err)
	}
	return c.written, handled, err
}

// sendfile sends from src until EOF or the limit, inside dst's
// Conn.Write callbacks (sendChunks), and leaves any error in c.err.
func (c *copier) sendfile() {
	for c.more() {
		if c.ctx.Err() != nil {
			c.err = ctxError(c.ctx, nil)
			return
		}
		if c.err = c.pace(); c.err != nil {
			return
		}
		c.next = stepRound
		werr := c.dst.Conn.Write(c.chunkFn)
		if werr != nil && c.err == nil {
			c.err = werr
		}
		if c.err != nil || c.next == stepDone {
			return
		}
	}
}

// sendChunks calls sendfile(2) into dfd until dst is full (false: the
// netpoller waits for room), or until the limit, the Pacer's grant or
// the context ends the call (true; c.next is stepDone at EOF, c.err set
// on failure).
func (c *copier) sendChunks(dfd uintptr) bool {
	for c.more() {
		if c.ctx.Err() != nil || (c.src.Pacer != nil && c.budget == 0) {
			return true
		}
		c.send.dfd, c.send.n = int(dfd), c.chunk(sendfileChunk)
		if rerr := c.src.Conn.Read(c.sendFn); rerr != nil {
			c.err = rerr // the caller closed src
			return true
		}
		m, e := c.send.m, c.send.err
		if m > 0 {
			c.spent(m)
			c.delivered(m)
		}
		switch {
		case e == unix.EINTR:
		case e == unix.EAGAIN && c.dst.pollable():
			return false // wait until dst takes more
		case e == unix.EAGAIN:
			pollFd(int(dfd), unix.POLLOUT, blockingPoll)
			return true
		case e != nil:
			c.err = e
			return true
		case m == 0:
			c.next = stepDone
			return true
		}
	}
	return true
}

// sendOne is Sendfile's src.Conn.Read callback: one sendfile(2) of
// c.send.n bytes from src's offset into c.send.dfd; a nil offset, so the
// kernel reads at the offset and moves it past what it sent. It runs
// under src's read lock, as read(2) of an *os.File and io.Copy's
// sendfile(2) do, so that copies (and reads) sharing one *os.File take
// disjoint bytes of it: sendfile(2) alone moves the offset without the
// kernel's f_pos lock. The lock is held for one call, not for the copy:
// another copy of the file waits for one chunk at most, never for this
// copy's destination to take more.
func (c *copier) sendOne(sfd uintptr) bool {
	c.send.m, c.send.err = unix.Sendfile(c.send.dfd, int(sfd), nil, c.send.n)
	return true
}
