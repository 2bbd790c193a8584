//go:build linux

package splice

import (
	"context"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/ctxerr"
	"github.com/pipes-go/pipes/internal/fd"
)

// End is one side of a Copy.
type End struct {
	// Conn gives access to the descriptor. Required: every system call
	// Copy makes on the descriptor runs inside a Conn.Read, Conn.Write or
	// Conn.Control callback, under Go's reference to it, so the number
	// cannot be closed and reused while a splice runs on it.
	Conn syscall.RawConn
	// Pipe reports that the descriptor is a pipe or FIFO: it is spliced
	// directly, with no intermediate pipe. Copy also detects pipes itself
	// (fstat), so false is never wrong, only a hint missed.
	Pipe bool
	// Wake, if non-nil, makes a wait blocked on Conn return (for example
	// by setting a deadline in the past). Copy calls it, from another
	// goroutine, when its context ends.
	Wake func()
	// Reset, if non-nil, undoes Wake (for example clears the deadline).
	// Copy calls it before returning if it called Wake.
	Reset func()
	// Pacer, if non-nil on the source End, paces the copy: Copy asks it
	// before each read from the source how many bytes it may read, and
	// gives back what it did not read when it returns.
	Pacer Pacer
	// Meter, if non-nil on the destination End, is told of the bytes
	// that reach the destination as they move, before Copy returns.
	Meter Meter
	// Info, if its Mode is set, is what the caller already knows of the
	// descriptor; Copy then skips its own fstat(2) and fcntl(F_GETFL).
	// Wrong information makes Copy fail (a wait on a descriptor the
	// netpoller does not watch fails with "not pollable") or take the
	// wrong path, so leave it zero unless it is certain.
	Info Info
}

// Pacer grants a copy the bytes it may read now: a rate limit. Take
// returns between 1 and max, waiting until it can grant some, or fails
// with an error wrapping ctx.Err() when ctx ends first. Refund gives back
// bytes granted and not read. Copy calls them from the copying goroutine,
// outside any RawConn callback, so a wait holds no descriptor.
type Pacer interface {
	Take(ctx context.Context, max int) (int, error)
	Refund(n int)
}

// Meter counts bytes as a copy delivers them: *atomic.Int64 is one.
// Add is called from the copying goroutine, once per system call that
// moved bytes.
type Meter interface{ Add(delta int64) int64 }

// Info describes a descriptor: its file type and status flags.
type Info struct {
	Mode  uint32 // st_mode & S_IFMT: unix.S_IFREG, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK, ...; 0: unknown
	Flags int    // fcntl(F_GETFL): O_NONBLOCK, O_APPEND, ...
}

// Inspect returns the Info of the descriptor behind c (fstat and
// fcntl F_GETFL, under Go's reference to it).
func Inspect(c syscall.RawConn) (Info, error) {
	info, err := fd.Inspect(c, fd.Flags)
	return Info{Mode: info.Mode, Flags: info.Flags}, err
}

// maxChunk bounds one splice(2) call of a direct copy.
const maxChunk = 1 << 30

// blockingPoll is how long a wait on a blocking descriptor (one the Go
// netpoller does not watch) sleeps in poll(2) before Copy checks again
// whether its context ended or the descriptor was closed.
const blockingPoll = 50 * time.Millisecond

// Copy moves up to limit bytes (limit < 0: until EOF) from src to dst
// with splice(2) and returns the number of bytes that reached dst.
//
// When either side is a pipe or FIFO the bytes are spliced directly;
// otherwise (file -> socket, socket -> socket, file -> file) they go
// through an intermediate pipe taken from pool and put back empty (a nil
// pool means a pipe made for this copy). A regular-file src is read from
// its current offset and a regular-file dst written at its current
// offset; both offsets advance by the bytes copied.
//
// handled == false means nothing was moved because the kernel cannot
// splice this pair (EINVAL, ENOSYS, EOPNOTSUPP, an O_APPEND dst, a
// directory, a nil Conn): the caller should copy in userspace. Otherwise
// err is nil when src reached EOF (or limit bytes were copied), and else
// the first error: the descriptor's, from Conn (closed by another
// goroutine: os.ErrClosed or net.ErrClosed), or an *os.SyscallError
// wrapping the errno (errors.Is(err, syscall.EPIPE), syscall.ECONNRESET).
//
// Descriptors in non-blocking mode (Go's pipes and sockets) wait for
// readiness on the Go netpoller, never spinning on EAGAIN; blocking ones
// wait in poll(2), a bounded slice of time at a time, and a blocking
// socket's SO_RCVTIMEO/SO_SNDTIMEO is lowered to that slice for the
// copy (see BoundBlocking), so that no system call blocks longer. A
// socket src's end is told from TCP's urgent mark, where splice stops
// as at EOF: read(2) steps over the urgent byte and the copy goes on.
// Closing either end
// from another goroutine ends the copy with an error, as it ends io.Copy.
// When ctx ends, Copy calls the ends' Wake and returns an error for which
// errors.Is(err, ctx.Err()) holds. Bytes already in the intermediate pipe
// are then delivered if dst takes them without waiting; they are never
// counted as written unless they reached dst. Those that did not are put
// back by seeking a regular-file src back, or reported in the error. A
// pipe that still holds bytes is closed, never pooled.
//
// A pooled pipe is held only while bytes move through it: a copy waiting
// for input holds none, so a bounded pool serves any number of mostly
// idle copies. A copy never waits for a pipe: when the pool has none free
// (Pool.TryGet), a round goes through a userspace buffer instead. The
// source End's Pacer, if any, paces the reads; the destination End's
// Meter is told of the bytes as they arrive. Descriptors are inspected
// (fstat, fcntl F_GETFL) unless End.Info says what they are; a pipe side
// is inspected only if the copy has to wait on it.
func Copy(ctx context.Context, dst, src End, limit int64, pool *Pool) (written int64, handled bool, err error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if dst.Conn == nil || src.Conn == nil {
		return 0, false, nil
	}
	if limit == 0 {
		return 0, true, nil
	}
	c := &copier{ctx: ctx, limit: limit, src: side{End: src}, dst: side{End: dst}}
	c.src.apply(src.Info)
	c.dst.apply(dst.Info)
	// Which path, and whether the pair can be spliced at all, depends on
	// what the descriptors are. A pipe side needs no inspection up front
	// (SPLICE_F_NONBLOCK keeps it from blocking, and the kernel refuses
	// what it cannot splice before moving anything); the other side must
	// be known, so that a blocking socket is bounded (boundBlocking).
	if !c.src.pipe() {
		if err := c.src.inspect(); err != nil {
			return 0, true, err
		}
	}
	if !c.dst.pipe() {
		if err := c.dst.inspect(); err != nil {
			return 0, true, err
		}
	}
	if (c.src.known && !c.src.spliceable()) || (c.dst.known && (!c.dst.spliceable() || c.dst.appendOnly)) {
		return 0, false, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, true, ctxError(ctx, nil)
	}
	c.wakeOnDone()
	defer c.stopWake()
	defer c.src.boundBlocking(unix.SO_RCVTIMEO)()
	defer c.dst.boundBlocking(unix.SO_SNDTIMEO)()
	c.pool = pool
	defer c.releaseBuffer()
	defer c.refund()
	if c.src.pipe() || c.dst.pipe() {
		handled, err = c.direct()
	} else {
		handled, err = c.viaPipe()
	}
	if err != nil && ctx.Err() != nil {
		err = ctxError(ctx, err)
	}
	return c.written, handled, err
}

// wakeOnDone arranges for the ends' Wake to be called when the copy's
// context ends (fd.Waker); stopWake, deferred by the caller, undoes it
// when the copy returns: it cancels that or, if Wake ran, waits for it
// and calls Reset. The state lives in the copier, so that only
// context.AfterFunc allocates.
func (c *copier) wakeOnDone() {
	if c.src.Wake == nil && c.dst.Wake == nil {
		return
	}
	c.waker.Arm(c.ctx, (*endWakers)(c))
}

func (c *copier) stopWake() { c.waker.Stop() }

// endWakers is the fd.Target of a copier: the Wake and Reset of its ends.
type endWakers copier

func (e *endWakers) Wake() {
	if e.src.Wake != nil {
		e.src.Wake()
	}
	if e.dst.Wake != nil {
		e.dst.Wake()
	}
}

func (e *endWakers) Reset() {
	if e.src.Reset != nil {
		e.src.Reset()
	}
	if e.dst.Reset != nil {
		e.dst.Reset()
	}
}

// ctxError returns the error of a copy ended by its context: it wraps
// ctx.Err(), its cause, and err.
func ctxError(ctx context.Context, err error) error {
	return ctxerr.Wrap("splice", ctx, err)
}

// side is an End with what Copy learnt about its descriptor at the start.
type side struct {
	End
	mode       uint32 // st_mode & S_IFMT
	nonblock   bool   // O_NONBLOCK: Go's netpoller watches it
	appendOnly bool   // O_APPEND
	known      bool   // the fields above are set
}

// apply records what the caller knows of the descriptor, if anything.
func (s *side) apply(info Info) {
	if info.Mode == 0 {
		return
	}
	s.known = true
	s.mode = info.Mode
	s.nonblock = info.Flags&unix.O_NONBLOCK != 0
	s.appendOnly = info.Flags&unix.O_APPEND != 0
}

// inspectMode learns the descriptor's type, and its flags unless it is
// a regular file or block device: those never wait, and their O_APPEND
// matters only on the intermediate-pipe path, which inspects in full.
func (s *side) inspectMode() error { return s.learn(fd.FlagsIfWaits) }

// inspect learns the descriptor's type and flags, once.
func (s *side) inspect() error { return s.learn(fd.Flags) }

// learn asks internal/fd what the descriptor is, once.
func (s *side) learn(need fd.Need) error {
	if s.known {
		return nil
	}
	info, err := fd.Inspect(s.Conn, need)
	if err != nil {
		return err
	}
	s.apply(Info{Mode: info.Mode, Flags: info.Flags})
	s.known = true
	return nil
}

func (s *side) spliceable() bool {
	switch s.mode {
	case unix.S_IFIFO, unix.S_IFREG, unix.S_IFSOCK, unix.S_IFCHR, unix.S_IFBLK:
		return true
	}
	return false
}

func (s *side) pipe() bool { return s.Pipe || s.mode == unix.S_IFIFO }

func (s *side) socket() bool { return s.mode == unix.S_IFSOCK }

// boundBlocking makes a wait inside the kernel on a blocking-mode socket
// (one the Go netpoller does not watch, as from os.NewFile of a blocking
// descriptor) return after blockingPoll, so that the copy can notice that
// its context ended or the descriptor was closed: it lowers opt
// (SO_RCVTIMEO for the source, SO_SNDTIMEO for the destination), after
// which the kernel answers EAGAIN, or a short count, to a splice, read or
// sendfile that waited that long. The returned restore puts the caller's
// value back. Blocking pipes need none of this: SPLICE_F_NONBLOCK covers
// the pipe side of every splice.
func (s *side) boundBlocking(opt int) (restore func()) {
	if !s.known || !s.socket() || s.nonblock {
		return func() {}
	}
	return BoundBlocking(s.Conn, opt)
}

// BoundBlocking lowers the socket option opt (unix.SO_RCVTIMEO or
// unix.SO_SNDTIMEO) of the blocking socket behind c to the slice Copy
// polls blocking descriptors in, unless it is already that short, and
// returns a function that puts the previous value back. A system call on
// the socket that would wait longer then returns EAGAIN (or a short
// count), so that a loop around it can check for cancellation. Callers
// use it only on sockets in blocking mode, for the duration of a copy.
func BoundBlocking(c syscall.RawConn, opt int) (restore func()) {
	var old *unix.Timeval
	c.Control(func(fd uintptr) {
		tv, err := unix.GetsockoptTimeval(int(fd), unix.SOL_SOCKET, opt)
		if err != nil {
			return
		}
		if d := time.Duration(tv.Nano()); d > 0 && d <= blockingPoll {
			return
		}
		slice := unix.NsecToTimeval(blockingPoll.Nanoseconds())
		if unix.SetsockoptTimeval(int(fd), unix.SOL_SOCKET, opt, &slice) == nil {
			old = tv
		}
	})
	return func() {
		if old != nil {
			c.Control(func(fd uintptr) {
				unix.SetsockoptTimeval(int(fd), unix.SOL_SOCKET, opt, old)
			})
		}
	}
}

// neverWaits reports descriptors that never answer EAGAIN.
func (s *side) neverWaits() bool { return s.mode == unix.S_IFREG || s.mode == unix.S_IFBLK }

// pollable reports whether a RawConn callback may return false to wait on
// the netpoller for this descriptor.
func (s *side) pollable() bool { return s.nonblock && !s.neverWaits() }

type copier struct {
	ctx      context.Context
	limit    int64
	written  int64
	src, dst side
	pool     *Pool
	buf      *[]byte // from pool.buffer, for rounds splice cannot make
	budget   int     // bytes the src's Pacer granted and the copy has not read

	waker fd.Waker // wakeOnDone's

	// State of a direct round, shared by its two nested callbacks.
	step     int
	serr     error
	wfd      int
	lastWait int // the side the last wait was for: stepWaitSrc or stepWaitDst

	// State of the intermediate-pipe path (viaPipe): the pipe held now,
	// and the callbacks that fill and drain it with what they found.
	// The callbacks are method values made once per copy, so that a
	// round allocates nothing.
	p        *Pipe
	fillFn   func(uintptr) bool
	drainFn  func(uintptr) bool
	fstep    fillStep
	ferr     error
	dstFull  bool // the last drain found dst without room
	drainErr error
	probe    bool // the last fill of a socket src was short: peek before splicing
	// streaming: the last probe found more input, so short fills are
	// not probed (a probe finding input costs a system call more than a
	// splice) until a splice finds the socket empty.
	streaming bool
	peekBuf   [1]byte // peek's buffer
}

// fillStep is what one fill of the intermediate pipe found.
type fillStep uint8

const (
	fillData   fillStep = iota // bytes are in the pipe
	fillEOF                    // src is at EOF
	fillMark                   // a socket src answered 0, or EAGAIN at the urgent mark: a buffer round tells
	fillNoPipe                 // no pipe was free: a buffer round moves this one
	fillAgain                  // a blocking src had no input for a poll slice
	fillErr                    // ferr is set
)

func (c *copier) more() bool { return c.limit < 0 || c.written < c.limit }

// delivered records n more bytes in dst.
func (c *copier) delivered(n int) {
	c.written += int64(n)
	if c.dst.Meter != nil {
		c.dst.Meter.Add(int64(n))
	}
}

// chunk bounds a read of up to max bytes by the limit and the Pacer's
// grant.
func (c *copier) chunk(max int) int {
	max = c.chunkUnpaced(max)
	if c.src.Pacer != nil {
		max = min(max, c.budget)
	}
	return max
}

// pace waits, when the copy is paced and has read all it was granted,
// for the source's Pacer to grant more (budget). Copy's loops call it
// before each read, outside any RawConn callback.
func (c *copier) pace() error {
	if c.src.Pacer == nil || c.budget > 0 {
		return nil
	}
	n, err := c.src.Pacer.Take(c.ctx, c.chunkUnpaced(maxChunk))
	if err != nil {
		return ctxError(c.ctx, err)
	}
	c.budget = n
	return nil
}

// chunkUnpaced is chunk without the Pacer's budget.
func (c *copier) chunkUnpaced(max int) int {
	if c.limit >= 0 && c.limit-c.written < int64(max) {
		return int(c.limit - c.written)
	}
	return max
}

// spent records n bytes read from a paced source.
func (c *copier) spent(n int) {
	if c.src.Pacer != nil {
		c.budget -= n
	}
}

// refund gives back what the Pacer granted and the copy did not read.
func (c *copier) refund() {
	if c.src.Pacer != nil && c.budget > 0 {
		c.src.Pacer.Refund(c.budget)
		c.budget = 0
	}
}

const (
	stepNone    = iota
	stepEOF     // src reached end of input
	stepDone    // limit reached
	stepWaitSrc // src has nothing to read
	stepWaitDst // dst has no room
	stepRetry   // EAGAIN, yet both sides look ready
	stepZero    // a socket src spliced 0 bytes: EOF, or TCP's urgent mark
	stepPace    // the Pacer's grant is used up
	stepBlocked // EAGAIN, both sides pollable: awaitBlocked finds which
	stepFail    // err is set
)

// direct splices src straight into dst, one of them being a pipe.
//
// Both callbacks nest: dst.Write outside, src.Read inside. A wait for dst
// returns false from the outer callback (holding only dst's reference); a
// wait for src leaves both callbacks first, so that closing dst meanwhile
// neither blocks in Close nor goes unnoticed.
func (c *copier) direct() (handled bool, err error) {
	backoff := time.Duration(0)
	inner := func(rfd uintptr) bool {
		for c.more() {
			if c.src.Pacer != nil && c.budget == 0 {
				c.step = stepPace
				return true
			}
			n, e := Splice(int(rfd), nil, c.wfd, nil, c.chunk(maxChunk), FlagMove|FlagNonblock)
			if n > 0 {
				c.spent(n)
				c.delivered(n)
				continue
			}
			switch {
			case e == nil && c.src.socket():
				c.step = stepZero
			case e == nil:
				c.step = stepEOF
			case e == unix.EAGAIN && c.lastWait != stepWaitDst && c.src.pollable() && c.dst.pollable():
				c.step = stepBlocked // likely src: see awaitBlocked
			case e == unix.EAGAIN:
				c.step = c.blockedSide(int(rfd), c.wfd)
			default:
				c.step, c.serr = stepFail, e
			}
			return true
		}
		c.step = stepDone
		return true
	}
	outer := func(fd uintptr) bool {
		c.step, c.wfd = stepNone, int(fd)
		if rerr := c.src.Conn.Read(inner); rerr != nil {
			c.step, c.serr = stepFail, rerr
			return true
		}
		if c.step != stepWaitDst || c.ctx.Err() != nil {
			return true
		}
		c.lastWait = stepWaitDst
		if c.dst.pollable() {
			return false
		}
		pollFd(c.wfd, unix.POLLOUT, blockingPoll)
		c.step = stepNone
		return true
	}
	retryAt := int64(-1) // c.written at the last stepRetry
	for c.more() {
		if c.ctx.Err() != nil {
			return true, ctxError(c.ctx, nil)
		}
		if err := c.pace(); err != nil {
			return true, err
		}
		c.step, c.serr = stepNone, nil
		werr := c.dst.Conn.Write(outer)
		if werr != nil && c.step != stepFail {
			c.step, c.serr = stepFail, werr
		}
		if c.step == stepBlocked {
			step, err := c.awaitBlocked()
			if err != nil {
				return true, err
			}
			c.lastWait, c.step = stepWaitSrc, step
			if step == stepWaitDst {
				c.lastWait = stepWaitDst
				if err := c.wait(&c.dst, true); err != nil {
					return true, err
				}
			}
		}
		switch c.step {
		case stepEOF, stepDone:
			return true, nil
		case stepFail:
			if errno, ok := c.serr.(syscall.Errno); ok {
				if c.written == 0 && fd.Refused(errno) {
					return false, nil
				}
				return true, os.NewSyscallError("splice", errno)
			}
			return true, c.serr
		case stepWaitSrc:
			backoff = 0
			c.lastWait = stepWaitSrc
			if err := c.wait(&c.src, false); err != nil {
				return true, err
			}
		case stepZero:
			if eof, err := c.throughBuffer(); err != nil || eof {
				return true, err
			}
		case stepRetry:
			if c.src.socket() {
				// EAGAIN from a readable socket: TCP's urgent mark (or
				// input that came meanwhile). A buffer round crosses
				// the mark, or moves the input.
				eof, again, err := c.bufferRound()
				if err != nil || eof {
					return true, err
				}
				if !again {
					continue
				}
			}
			// Usually a side became ready between the splice and the
			// poll (an ACK freed socket space): splice again at once.
			// Only EAGAIN after EAGAIN with nothing moved in between,
			// and both sides still reported ready, backs off.
			if c.written != retryAt {
				backoff = 0
			} else {
				backoff = min(max(2*backoff, 20*time.Microsecond), 5*time.Millisecond)
				time.Sleep(backoff)
			}
			retryAt = c.written
		default:
			backoff = 0
		}
	}
	return true, nil
}

// awaitBlocked runs after EAGAIN from a direct splice whose two sides are
// on the netpoller, when the last wait was for src: inside src's
// Conn.Read, once its poll descriptor is armed, one poll(2) of both
// descriptors (dst's under a Control reference) tells which side is not
// ready, and the copy parks on src without a second poll. It returns
// stepNone once src is readable (after a wait), stepWaitDst when dst has
// no room, and stepRetry when both look ready. A closed dst is left for
// the next splice to report.
func (c *copier) awaitBlocked() (step int, err error) {
	first := true
	err = c.src.Conn.Read(func(sfd uintptr) bool {
		if !first {
			step = stepNone
			return true
		}
		first = false
		step = stepRetry
		var dstReady, srcReady bool
		cerr := c.dst.Conn.Control(func(dfd uintptr) {
			const bad = unix.POLLERR | unix.POLLHUP | unix.POLLNVAL
			fds := [2]unix.PollFd{{Fd: int32(dfd), Events: unix.POLLOUT}, {Fd: int32(sfd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds[:], 0); err != nil {
				dstReady, srcReady = true, true
				return
			}
			dstReady = fds[0].Revents&(unix.POLLOUT|bad) != 0
			srcReady = fds[1].Revents&(unix.POLLIN|bad) != 0
		})
		switch {
		case cerr != nil:
			step = stepNone
		case !dstReady:
			step = stepWaitDst
		case !srcReady && c.ctx.Err() == nil:
			step = stepWaitSrc
			return false
		}
		return true
	})
	if err != nil && c.ctx.Err() != nil {
		err = ctxError(c.ctx, err)
	}
	return step, err
}

// blockedSide tells, after EAGAIN from a direct splice, which side is not
// ready.
func (c *copier) blockedSide(rfd, wfd int) int {
	if c.src.inspectMode() != nil || c.dst.inspectMode() != nil {
		return stepRetry
	}
	switch {
	case c.src.neverWaits():
		return stepWaitDst
	case c.dst.neverWaits():
		return stepWaitSrc
	}
	fds := []unix.PollFd{{Fd: int32(wfd), Events: unix.POLLOUT}, {Fd: int32(rfd), Events: unix.POLLIN}}
	if _, err := unix.Poll(fds, 0); err != nil {
		return stepRetry
	}
	const bad = unix.POLLERR | unix.POLLHUP | unix.POLLNVAL
	switch {
	case fds[0].Revents&(unix.POLLOUT|bad) == 0:
		return stepWaitDst
	case fds[1].Revents&(unix.POLLIN|bad) == 0:
		return stepWaitSrc
	}
	return stepRetry
}

// wait blocks until s is ready to read (or write), ctx ends, or s is
// closed. It checks readiness after Go's poll descriptor is armed, so an
// event that arrived since the last EAGAIN is not lost.
func (c *copier) wait(s *side, write bool) error {
	events := int16(unix.POLLIN)
	if write {
		events = unix.POLLOUT
	}
	if err := s.inspect(); err != nil {
		return err
	}
	first := true
	f := func(fd uintptr) bool {
		if !s.pollable() {
			pollFd(int(fd), events, blockingPoll)
			return true
		}
		if !first {
			return true
		}
		first = false
		return c.ctx.Err() != nil || pollFd(int(fd), events, 0)
	}
	if write {
		return s.Conn.Write(f)
	}
	return s.Conn.Read(f)
}

// pollFd waits up to timeout for events on fd; it reports readiness
// (including error and hang-up, which the next splice reports).
func pollFd(fd int, events int16, timeout time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
	n, err := unix.Poll(fds, int(timeout/time.Millisecond))
	return err == nil && n > 0 && fds[0].Revents != 0
}

// viaPipe copies through an intermediate pipe. Invariant: the pipe is
// empty when a round starts; a round fills it with one splice from src
// and drains all of it into dst.
//
// A pooled pipe is held only while bytes move: the fill takes one inside
// src's Conn.Read callback, and gives it back, empty, before the copy
// parks on the netpoller for input (Go's internal/poll splices after
// arming the poll descriptor too, so no readiness is lost and no poll(2)
// is needed). Idle copies thus hold no pipe, and a bounded pool serves any
// number of them. A copy never waits for a pipe either: when none is free
// (every pipe holds bytes for a destination that does not read, say), the
// round goes through a userspace buffer, as io.Copy would, and the next
// round tries again. A destination that had no room is waited for before
// more is read, so a stalled destination pins at most one pipe.
func (c *copier) viaPipe() (handled bool, err error) {
	c.fillFn, c.drainFn = c.fillPipe, c.drainPipe
	defer func() { err = c.dropPipe(err) }()
	for c.more() {
		if c.ctx.Err() != nil {
			return true, ctxError(c.ctx, nil)
		}
		if err := c.pace(); err != nil {
			return true, err
		}
		if c.dstFull && !c.dst.neverWaits() {
			if err := c.wait(&c.dst, true); err != nil {
				return true, err
			}
			c.dstFull = false
		}
		c.fstep, c.ferr = fillErr, nil
		if rerr := c.src.Conn.Read(c.fillFn); rerr != nil {
			return true, rerr
		}
		switch c.fstep {
		case fillEOF:
			return true, nil
		case fillAgain:
			continue
		case fillMark, fillNoPipe:
			if eof, err := c.throughBuffer(); err != nil || eof {
				return true, err
			}
			continue
		case fillErr:
			if errno, ok := c.ferr.(syscall.Errno); ok {
				if c.written == 0 && fd.Refused(errno) {
					return false, nil
				}
				return true, os.NewSyscallError("splice", errno)
			}
			return true, c.ferr
		}
		if err := c.drain(c.p); err != nil {
			if errno, ok := err.(syscall.Errno); ok {
				if c.written == 0 && fd.Refused(errno) && c.src.mode == unix.S_IFREG {
					if c.seekBack(c.p.data) == nil {
						c.p.data, c.p.dirty = 0, true
						return false, nil // the file offset is back where it was
					}
				}
				return true, os.NewSyscallError("splice", errno)
			}
			if c.ctx.Err() != nil {
				c.flush(c.p)
			}
			return true, err
		}
	}
	return true, nil
}

// fillPipe is the Conn.Read callback of viaPipe: it splices from src
// into the (empty) pipe, taking one first if the copy holds none, and
// records what it found in fstep. On EAGAIN it gives the pipe back and
// parks on the netpoller (returns false).
//
// A socket source is probed with recv(MSG_PEEK) instead of a splice
// once a fill came back short, the usual end of a message: the probe
// costs what the splice that answers EAGAIN would, and it also tells TCP's
// urgent mark, where splice answers EAGAIN (or 0) although input
// follows, from an empty socket. A splice that answers EAGAIN without a
// probe before it is checked with one; if input is there, the mark is
// crossed by a buffer round (fillMark). While a probe keeps finding input
// (a stream arriving in pieces), short fills go unprobed (streaming).
func (c *copier) fillPipe(fd uintptr) bool {
	if c.probe {
		c.probe = false
		switch n, e := peek(int(fd), &c.peekBuf); {
		case e == unix.EAGAIN:
			return c.srcEmpty(int(fd))
		case e != nil:
			c.fstep, c.ferr = fillErr, e
			return true
		case n == 0:
			c.fstep = fillEOF
			return true
		}
		c.streaming = true // input came on: splice first until it stops
	}
	if c.p == nil {
		if c.p = takePipe(c.pool); c.p == nil {
			c.fstep = fillNoPipe
			return true
		}
	}
	chunk := c.chunk(c.p.size)
	m, e := Splice(int(fd), nil, c.p.wfd, nil, chunk, FlagMove|FlagNonblock)
	switch {
	case m > 0:
		c.p.data += m
		c.spent(m)
		c.fstep = fillData
		c.probe = m < chunk && c.src.socket() && !c.streaming
	case e == nil && c.src.socket():
		c.fstep = fillMark // EOF, or the urgent mark: read(2) tells
	case e == nil:
		c.fstep = fillEOF
	case e == unix.EAGAIN:
		if c.src.socket() {
			if n, e := peek(int(fd), &c.peekBuf); e == nil && n > 0 {
				c.fstep = fillMark // input, yet EAGAIN: the urgent mark
				return true
			}
			c.streaming = false // messages: probe after the next one
		}
		return c.srcEmpty(int(fd))
	default:
		c.fstep, c.ferr = fillErr, e
	}
	return true
}

// srcEmpty handles a src with no input: it gives the (empty) pipe back
// to the pool, and returns false (park on the netpoller) for a
// non-blocking src, else waits a poll(2) slice (fillAgain). A copy whose
// context ended stops instead.
func (c *copier) srcEmpty(fd int) bool {
	if c.p != nil && c.pool != nil {
		c.pool.putClean(c.p) // empty: nobody else's bytes are in it
		c.p = nil
	}
	switch {
	case c.ctx.Err() != nil:
		c.fstep, c.ferr = fillErr, ctxError(c.ctx, nil)
	case c.src.pollable():
		return false
	default:
		pollFd(fd, unix.POLLIN, blockingPoll)
		c.fstep = fillAgain
	}
	return true
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

// bufferRound moves up to one buffer of bytes from src to dst through
// userspace: one read(2) from src, then write(2) until dst has all of
// them, waiting for room as drain does. It makes the rounds splice
// cannot: one for which no pipe is free, and one at TCP's urgent mark,
// where splice returns 0 as if at EOF while read(2) steps over the urgent
// byte (not inline: SO_OOBINLINE unset) and goes on, as io.Copy's does.
// eof reports that read returned 0, again that src had no input. Bytes
// read and not delivered are un-read or reported (unread).
func (c *copier) bufferRound() (eof, again bool, err error) {
	if c.buf == nil {
		c.buf = c.pool.buffer()
	}
	if err := c.pace(); err != nil {
		return false, false, err
	}
	buf := (*c.buf)[:c.chunk(len(*c.buf))]
	n := 0
	rerr := c.src.Conn.Read(func(fd uintptr) bool {
		for {
			m, e := unix.Read(int(fd), buf)
			switch {
			case e == unix.EINTR:
				continue
			case m > 0:
				n = m
			case e == nil:
				eof = true
			case e == unix.EAGAIN:
				again = true
			default:
				err = os.NewSyscallError("read", e)
			}
			return true
		}
	})
	if rerr != nil {
		return false, false, rerr
	}
	if n == 0 {
		return eof, again, err
	}
	c.spent(n)
	left, err := c.writeAll(buf[:n])
	if err != nil {
		if c.ctx.Err() != nil {
			err = ctxError(c.ctx, err)
		}
		return false, false, c.unread(left, err)
	}
	return false, false, nil
}

// throughBuffer makes a buffer round where splice cannot (see
// bufferRound: TCP's urgent mark, no free pipe), and waits for input if
// src had none. eof reports src's end.
func (c *copier) throughBuffer() (eof bool, err error) {
	eof, again, err := c.bufferRound()
	if err != nil || eof || !again {
		return eof, err
	}
	return false, c.wait(&c.src, false)
}

// writeAll writes b to dst, waiting for room on the netpoller (or in
// poll(2) slices for a blocking dst), and returns how many bytes of b it
// could not write when it fails. The written count grows as bytes go.
func (c *copier) writeAll(b []byte) (left int, err error) {
	for len(b) > 0 {
		werr := c.dst.Conn.Write(func(fd uintptr) bool {
			for len(b) > 0 {
				m, e := unix.Write(int(fd), b)
				if m > 0 {
					b = b[m:]
					c.delivered(m)
					continue
				}
				switch {
				case e == unix.EINTR:
					continue
				case e == unix.EAGAIN && c.ctx.Err() != nil:
					err = ctxError(c.ctx, nil)
				case e == unix.EAGAIN && c.dst.pollable():
					return false
				case e == unix.EAGAIN:
					pollFd(int(fd), unix.POLLOUT, blockingPoll)
				case e == nil:
					err = io.ErrShortWrite
				default:
					err = os.NewSyscallError("write", e)
				}
				return true
			}
			return true
		})
		if werr != nil {
			return len(b), werr
		}
		if err != nil {
			return len(b), err
		}
		if c.ctx.Err() != nil && len(b) > 0 {
			return len(b), ctxError(c.ctx, nil)
		}
	}
	return 0, nil
}

// releaseBuffer gives the buffer of bufferRound back to the pool.
func (c *copier) releaseBuffer() {
	if c.buf != nil {
		c.pool.putBuffer(c.buf)
		c.buf = nil
	}
}

// Drain splices the n bytes a caller put into p (by a splice of its own,
// such as an io_uring SPLICE into p) into dst, the way Copy drains its
// intermediate pipe: inside dst's RawConn.Write callbacks, waiting on the
// netpoller when dst is full. It returns the bytes that reached dst;
// p.Buffered() reports those still in p. ctx ends a wait only once
// something has woken it (dst.Wake, which Drain does not arrange: the
// caller does). Errors are those of Copy.
func Drain(ctx context.Context, dst End, p *Pipe, n int) (written int64, err error) {
	if ctx == nil {
		ctx = context.Background()
	}
	c := &copier{ctx: ctx, limit: -1, dst: side{End: dst}}
	c.dst.apply(dst.Info)
	if !c.dst.known {
		if err := c.dst.inspect(); err != nil {
			return 0, err
		}
	}
	p.data = n
	err = c.drain(p)
	if errno, ok := err.(syscall.Errno); ok {
		err = os.NewSyscallError("splice", errno)
	}
	if err != nil && ctx.Err() != nil {
		err = ctxError(ctx, err) // a wait woken by Wake's deadline
	}
	return c.written, err
}

// drain splices everything in p into dst, waiting for room on the
// netpoller (in poll(2) slices for a blocking dst) while holding p: its
// bytes are this copy's. It records in dstFull whether it had to wait.
func (c *copier) drain(p *Pipe) error {
	if c.drainFn == nil {
		c.drainFn = c.drainPipe
	}
	c.p = p
	for p.data > 0 {
		c.drainErr = nil
		if werr := c.dst.Conn.Write(c.drainFn); werr != nil {
			return werr
		}
		if c.drainErr != nil {
			return c.drainErr
		}
		if p.data > 0 && c.ctx.Err() != nil {
			return ctxError(c.ctx, nil)
		}
	}
	return nil
}

// drainPipe is drain's Conn.Write callback.
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
		case e == unix.EAGAIN:
			// p holds bytes, so dst has no room.
			c.dstFull = true
			if c.ctx.Err() != nil {
				c.drainErr = ctxError(c.ctx, nil)
				return true
			}
			if c.dst.pollable() {
				return false
			}
			pollFd(int(fd), unix.POLLOUT, blockingPoll)
		case e == nil:
			c.drainErr = fmt.Errorf("splice: pipe reported %d bytes but gave none", p.data)
		default:
			c.drainErr = e
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

// unread accounts for left bytes read from src and not delivered: a
// regular-file src is seeked back over them, so its offset stays just
// after the bytes that reached dst; otherwise they are lost and the
// error says how many.
func (c *copier) unread(left int, err error) error {
	if left == 0 {
		return err
	}
	if c.src.mode == unix.S_IFREG && c.seekBack(left) == nil {
		return err
	}
	lost := fmt.Errorf("splice: %d bytes read from the source were not delivered", left)
	if err == nil {
		return lost
	}
	return fmt.Errorf("%w (%w)", err, lost)
}

// seekBack moves a regular-file src's offset back by n bytes.
func (c *copier) seekBack(n int) error {
	var serr error
	cerr := c.src.Conn.Control(func(fd uintptr) {
		_, serr = unix.Seek(int(fd), -int64(n), io.SeekCurrent)
	})
	if cerr != nil {
		return cerr
	}
	return serr
}
