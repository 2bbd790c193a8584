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
	c := &copier{ctx: ctx, limit: limit, src: side{End: src}, dst: side{End: dst}}
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
	cerr := src.Conn.Control(func(sfd uintptr) {
		err = c.sendfile(int(sfd))
	})
	if cerr != nil && err == nil {
		err = cerr
	}
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

// sendfile sends from sfd until EOF or the limit, inside dst's
// Conn.Write callbacks. A nil offset: the kernel reads at sfd's position
// and moves it past what it sent.
func (c *copier) sendfile(sfd int) (err error) {
	for c.more() {
		if c.ctx.Err() != nil {
			return ctxError(c.ctx, nil)
		}
		if err := c.pace(); err != nil {
			return err
		}
		eof := false
		werr := c.dst.Conn.Write(func(dfd uintptr) bool {
			for c.more() {
				if c.ctx.Err() != nil || (c.src.Pacer != nil && c.budget == 0) {
					return true
				}
				m, e := unix.Sendfile(int(dfd), sfd, nil, c.chunk(sendfileChunk))
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
					err = e
					return true
				case m == 0:
					eof = true
					return true
				}
			}
			return true
		})
		if werr != nil && err == nil {
			err = werr
		}
		if err != nil || eof {
			return err
		}
	}
	return nil
}
