//go:build linux

package pipes

import (
	"context"
	"io"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/ctxerr"
)

// A fan-out's source in blocking mode (os.NewFile of a descriptor without
// O_NONBLOCK, or one that f.Fd() or term.MakeRaw left so) is not on the
// netpoller and has no deadlines: a Read of it waits in the kernel, where
// neither a cancel nor Engine.Close reaches it. FanOut reads such a
// source, which it reads through userspace, through the wrapper here:
// it waits in poll(2) slices and checks between two whether the fan-out
// ended, as splice.Copy does for the blocking descriptors of a copy.

// blockingSlice is how long a wait sleeps in poll(2) at a time.
const blockingSlice = 50 * time.Millisecond

// pollFD waits up to timeout for events on fd. It reports readiness,
// error and hang-up included (the next read or write reports those).
func pollFD(fd int, events int16, timeout time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
	n, err := unix.Poll(fds, int(timeout/time.Millisecond))
	return err == nil && n > 0 && fds[0].Revents != 0
}

// blockingSource returns src, a fan-out's source read through userspace,
// wrapped so that its reads end when ctx does, if it is a pipe, socket
// or character device in blocking mode; else src itself.
func blockingSource(ctx context.Context, src io.Reader) io.Reader {
	ep, ok := readerEndpoint(src)
	if !ok || ep.info.Flags&unix.O_NONBLOCK != 0 {
		return src
	}
	switch {
	case ep.kind == kindPipe, ep.kind == kindSocket:
	case ep.kind == kindOther && ep.info.Mode == unix.S_IFCHR:
	default:
		return src
	}
	return &blockingReader{ctx: ctx, r: src, conn: ep.conn}
}

// blockingReader reads r, whose descriptor is in blocking mode, only once
// poll(2) reports input (or an error, or hang-up), so that a read never
// waits in the kernel: it waits in poll(2) slices, and fails with an error
// wrapping ctx.Err() once ctx ends. (A reader of the same descriptor
// elsewhere that takes the input between the poll and the read makes the
// read wait, as it would make io.Copy's.)
type blockingReader struct {
	ctx  context.Context
	r    io.Reader
	conn syscall.RawConn
}

func (b *blockingReader) Read(p []byte) (int, error) {
	for {
		if b.ctx.Err() != nil {
			return 0, ctxerr.Wrap("pipes: fan-out", b.ctx, nil)
		}
		ready := false
		if err := b.conn.Control(func(fd uintptr) {
			ready = pollFD(int(fd), unix.POLLIN, blockingSlice)
		}); err != nil || ready {
			// Closed: r's Read says so in its own words.
			return b.r.Read(p)
		}
	}
}
