//go:build linux && !pipes_portable

package pipes

import (
	"context"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/ctxerr"
	"github.com/pipes-go/pipes/internal/fd"
)

// A fan-out's ends in blocking mode (os.NewFile of a descriptor without
// O_NONBLOCK, or one that f.Fd() or term.MakeRaw left so) are not on the
// netpoller and have no deadlines: a Read or Write on them waits in the
// kernel, where neither a cancel, Engine.Close nor an eviction reaches
// it. FanOut reads such a source (through userspace) and writes such a
// destination through the wrappers here: they wait in poll(2) slices and
// check between two whether the wait should end, as splice.Copy does for
// the blocking descriptors of a copy.

// blockingSource returns src, the source of a fan-out or a copy read
// through userspace, wrapped so that its reads end when ctx does, and
// true, if it is a pipe, socket (of any type but listening) or character
// device in blocking mode, open for reading; else src itself and false.
func blockingSource(ctx context.Context, src io.Reader) (io.Reader, bool) {
	ep, ok := readerEndpoint(src)
	if !ok {
		if rc, ok := blockingConn(src, readsAfterPoll); ok {
			return &blockingReader{ctx: ctx, r: src, conn: rc}, true
		}
		return src, false
	}
	if ep.Info.Flags&unix.O_NONBLOCK != 0 {
		return src, false
	}
	if ep.Info.Flags&unix.O_ACCMODE == unix.O_WRONLY {
		// Not open for reading (a pipe's write end): poll(2) never
		// reports input there, and the read fails at once (EBADF),
		// as io.Copy's does.
		return src, false
	}
	switch {
	case ep.kind == kindPipe, ep.kind == kindSocket:
	case ep.kind == kindOther && ep.Info.Mode == unix.S_IFCHR:
	default:
		return src, false
	}
	return &blockingReader{ctx: ctx, r: src, conn: ep.Conn}, true
}

// blockingConn returns the RawConn of v and true if v is a descriptor
// in blocking mode, not one of Go's sockets (those are on the
// netpoller), for which is holds, given the descriptor, its file type
// (st_mode & S_IFMT) and its status flags.
func blockingConn(v any, is func(fd int, mode uint32, flags int) bool) (syscall.RawConn, bool) {
	switch v.(type) {
	case *net.UDPConn, *net.UnixConn, *net.TCPConn, *net.IPConn:
		return nil, false
	}
	sc, ok := v.(syscall.Conn)
	if !ok || isNil(v) {
		return nil, false
	}
	rc, err := sc.SyscallConn()
	if err != nil || rc == nil {
		return nil, false
	}
	ok = false
	rc.Control(func(d uintptr) {
		var st unix.Stat_t
		if unix.Fstat(int(d), &st) != nil {
			return
		}
		fl, err := unix.FcntlInt(d, unix.F_GETFL, 0)
		if err != nil || fl&unix.O_NONBLOCK != 0 {
			return
		}
		ok = is(int(d), st.Mode&unix.S_IFMT, fl)
	})
	return rc, ok
}

// readsAfterPoll reports a blocking descriptor of a kind the kernel path
// does not take that a userspace copy reads only once poll(2) reports
// input: a message socket or an event source.
func readsAfterPoll(fd int, mode uint32, flags int) bool {
	return messageSocket(fd, mode, flags) || eventSource(fd, mode, flags)
}

// messageSocket reports a datagram or seqpacket socket (UDP, unixgram,
// unixpacket) that is not listening, the kind of blocking descriptor of
// os.NewFile that blockingConn finds where the kernel path found no
// stream: its reads and writes wait in the kernel like a blocking
// stream socket's, and are wrapped the same way.
func messageSocket(fd int, mode uint32, _ int) bool {
	if mode != unix.S_IFSOCK {
		return false
	}
	// A listening socket's read fails at once, where poll(2) waits for
	// a connection.
	l, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	return err == nil && l == 0
}

// eventSources are the names /proc/self/fd gives the anonymous-inode
// descriptors whose read(2) waits for an event and whose poll(2)
// reports input once one is there.
var eventSources = [...]string{
	"anon_inode:[eventfd]",
	"anon_inode:[timerfd]",
	"anon_inode:[signalfd]",
	"anon_inode:inotify",
}

// eventSource reports an eventfd, timerfd, signalfd or inotify
// descriptor open for reading: in blocking mode (os.NewFile of one made
// without O_NONBLOCK) its read waits in the kernel until an event, like
// a blocking pipe's. fstat does not tell these from the other
// anonymous-inode descriptors (no file type in st_mode), among them
// epoll, pidfd and perf events, whose read fails or returns at once
// while poll(2) may never report input: reading those only after
// poll(2) would turn their answer into a hang. So the descriptor's link
// in /proc/self/fd names it, one readlink(2) for an anonymous
// descriptor only; where /proc is not mounted it is read as it is.
func eventSource(fd int, mode uint32, flags int) bool {
	if mode != 0 || flags&unix.O_ACCMODE == unix.O_WRONLY {
		return false
	}
	var buf [64]byte
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(fd), buf[:])
	return err == nil && slices.Contains(eventSources[:], string(buf[:n]))
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
			return 0, ctxerr.Wrap("pipes", b.ctx, nil)
		}
		ready := false
		if err := b.conn.Control(func(d uintptr) {
			ready = fd.Poll(int(d), unix.POLLIN, fd.PollSlice)
		}); err != nil || ready {
			// Closed: r's Read says so in its own words.
			return b.r.Read(p)
		}
	}
}

// blockingDest returns w, a fan-out's destination, wrapped so that a
// write waiting for room can be interrupted by a write deadline, if it is
// an *os.File of a pipe or socket in blocking mode; else w itself. A
// terminal in blocking mode is left as it is: a write to one waits in the
// kernel until all of it fits, and nothing tells beforehand how much
// fits. The wrapper writes to the descriptor itself, in place of w's
// Write, so only an *os.File is wrapped, whose Write is that write: any
// other type giving its descriptor (syscall.Conn) may have a Write of its
// own (one that transforms or counts the bytes), which a userspace copy
// calls as io.Copy does.
func blockingDest(w io.Writer) io.Writer {
	if _, ok := w.(*os.File); !ok {
		return w
	}
	ep, ok := writerEndpoint(w)
	if !ok {
		if rc, ok := blockingConn(w, messageSocket); ok {
			return &blockingWriter{w: w, conn: rc, socket: true}
		}
		return w
	}
	if ep.Info.Flags&unix.O_NONBLOCK != 0 || (ep.kind != kindPipe && ep.kind != kindSocket) {
		return w
	}
	return &blockingWriter{w: w, conn: ep.Conn, socket: ep.kind == kindSocket}
}

// blockingWriter writes to w, a pipe or socket in blocking mode, with
// system calls that do not wait (send(2) with MSG_DONTWAIT,
// pwritev2(2) with RWF_NOWAIT), waiting for room in poll(2) slices. Its
// write deadline interrupts such a wait, as a deadline interrupts a
// write on the netpoller: the Write returns what it wrote and an error
// wrapping os.ErrDeadlineExceeded.
type blockingWriter struct {
	w        io.Writer
	conn     syscall.RawConn
	socket   bool
	deadline atomic.Int64 // the write deadline (UnixNano); 0: none
	// pages: the kernel refused RWF_NOWAIT on this pipe (a kernel whose
	// pipes lack it): it is written PIPE_BUF bytes at a time, each only
	// once poll(2) reports room, so that the write never waits.
	pages bool
}

// SetWriteDeadline sets the deadline of Write; the zero time clears it.
func (b *blockingWriter) SetWriteDeadline(t time.Time) error {
	d := int64(0)
	if !t.IsZero() {
		d = max(t.UnixNano(), 1)
	}
	b.deadline.Store(d)
	return nil
}

// left returns how long a wait may last before the deadline: at most a
// slice, and <= 0 once the deadline has passed.
func (b *blockingWriter) left() time.Duration {
	d := b.deadline.Load()
	if d == 0 {
		return fd.PollSlice
	}
	return min(time.Until(time.Unix(0, d)), fd.PollSlice)
}

func (b *blockingWriter) Write(p []byte) (n int, err error) {
	for n < len(p) {
		wait := b.left()
		if wait <= 0 {
			return n, os.ErrDeadlineExceeded
		}
		var m int
		var e error
		if cerr := b.conn.Write(func(d uintptr) bool {
			m, e = b.writeNow(int(d), p[n:])
			if e == unix.EAGAIN {
				fd.Poll(int(d), unix.POLLOUT, wait)
				e = nil
			}
			return true
		}); cerr != nil {
			// Closed: w's Write says so in its own words.
			m, err = b.w.Write(p[n:])
			return n + m, err
		}
		n += max(m, 0)
		if e != nil {
			return n, e
		}
	}
	return n, nil
}

// writeNow writes what d takes of p now, without waiting: EAGAIN when
// it has no room.
func (b *blockingWriter) writeNow(d int, p []byte) (int, error) {
	for {
		var n int
		var err error
		switch {
		case b.socket:
			n, err = unix.SendmsgN(d, p, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		case !b.pages:
			n, err = unix.Pwritev2(d, [][]byte{p}, -1, unix.RWF_NOWAIT)
			if err == unix.EOPNOTSUPP || err == unix.EINVAL || err == unix.ENOSYS {
				b.pages = true
				continue
			}
		case !fd.Poll(d, unix.POLLOUT, 0):
			return 0, unix.EAGAIN
		default:
			// A pipe with room takes a write of up to PIPE_BUF bytes
			// whole, without waiting.
			n, err = unix.Write(d, p[:min(len(p), 4096)])
		}
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, err
		}
		op := "write"
		if b.socket {
			op = "sendmsg"
		}
		return 0, os.NewSyscallError(op, err)
	}
}
