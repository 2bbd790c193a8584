//go:build linux

package splice

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
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
	// goroutine, when its context ends. If it panics, Copy panics with
	// the same value in its caller's goroutine once the copy is over
	// (after Reset), as a panic of the caller's code there would.
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
	// Gate, if non-nil on the source End, gives Sendfile's sendfile(2)
	// calls into a non-blocking destination their turns: each is entered
	// right before the call, under both descriptors' locks, and left
	// when it returns, for the calls of each Pacer grant until the copy
	// first waits for room (see Sendfile). Copy does not use it.
	Gate Gate
	// Info, if its Mode is set, is what the caller already knows of the
	// descriptor; Copy then skips its own fstat(2) and fcntl(F_GETFL).
	// Wrong information makes Copy fail (a wait on a descriptor the
	// netpoller does not watch fails with "not pollable") or take the
	// wrong path, so leave it zero unless it is certain.
	Info Info

	// afterEmptySplice, a test's, is called with the source's
	// descriptor after a splice from it found nothing: by the copy of a
	// socket source after an EAGAIN, before the probe or poll that checks
	// that answer, and by a direct copy from a pipe after a 0, before it
	// looks for bytes in the pipe.
	afterEmptySplice func(fd int)
	// bufferRead, a test's, is called with the count of each read(2) of
	// a buffer round from the source (0: its end, or an error).
	bufferRead func(n int)
}

// Gate bounds how many copies sharing it are inside a system call that
// moves bytes at once. Enter waits for a turn, or fails with an error
// wrapping ctx.Err() when ctx ends first; it reports whether it gave
// one (a Gate may let a call through without a turn), to be given back
// by Leave once the call returns. Sendfile calls them from the copying
// goroutine inside the descriptors' RawConn callbacks: a Close of either
// end waits for a wait for a turn to end. Another error of Enter ends
// the copy with that error wrapped ("splice: gate: ..."), or, once ctx
// has ended, with one for which errors.Is(err, ctx.Err()) holds too.
type Gate interface {
	Enter(ctx context.Context) (bool, error)
	Leave()
}

// Pacer grants a copy the bytes it may read now: a rate limit. Take
// returns between 1 and max, waiting until it can grant some, or fails
// with an error wrapping ctx.Err() when ctx ends first. Refund gives back
// bytes granted and not read. Copy calls them from the copying goroutine,
// outside any RawConn callback, so a wait holds no descriptor.
//
// What Copy and Sendfile do with other answers: a grant above max is
// kept, read over the next rounds before Take is asked again, and what
// is left of it refunded when the copy returns; a grant below 1 with a
// nil error ends the copy with an error wrapping io.ErrNoProgress
// (nothing would ever be read); any other error of Take ends it with
// that error wrapped ("splice: pacer: ..."), or, once ctx has ended,
// with one for which errors.Is(err, ctx.Err()) holds too.
type Pacer interface {
	Take(ctx context.Context, max int) (int, error)
	Refund(n int)
}

// Meter counts bytes as a copy delivers them: *atomic.Int64 is one.
// Add is called from the copying goroutine, once per system call that
// moved bytes. A panic in Add goes up to the caller of Copy, Sendfile
// or Drain, once the copy has given back what it held (its pipe, closed
// or pooled, the socket timeouts it lowered, its wake-up on ctx).
type Meter interface{ Add(delta int64) int64 }

// Info describes a descriptor: its file type and status flags, and a
// socket's address family where the caller knows it.
type Info struct {
	Mode  uint32 // st_mode & S_IFMT: unix.S_IFREG, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK, ...; 0: unknown
	Flags int    // fcntl(F_GETFL): O_NONBLOCK, O_APPEND, ...
	// Family is a socket's address family (unix.AF_UNIX, ...); 0:
	// unknown, and Inspect leaves it so. A splice from a unix stream
	// socket answers 0 only at its end, and Copy then ends without
	// the read(2) that tells a TCP socket's end from its urgent mark.
	Family int
}

// Inspect returns the Info of the descriptor behind c (fstat and
// fcntl F_GETFL, under Go's reference to it). A nil c gives an error
// wrapping os.ErrInvalid.
func Inspect(c syscall.RawConn) (Info, error) {
	if c == nil {
		return Info{}, fmt.Errorf("splice: Inspect of a nil RawConn: %w", os.ErrInvalid)
	}
	info, err := fd.Inspect(c, fd.Flags)
	return Info{Mode: info.Mode, Flags: info.Flags}, err
}

// maxChunk bounds one splice(2) call of a direct copy.
const maxChunk = 1 << 30

// blockingPoll is how long a wait on a blocking descriptor (one the Go
// netpoller does not watch) sleeps in poll(2) before Copy checks again
// whether its context ended or the descriptor was closed.
const blockingPoll = fd.PollSlice

// Copy moves up to limit bytes (limit < 0: until EOF) from src to dst
// with splice(2) and returns the number of bytes that reached dst. It
// reads *dst and *src when it starts and keeps no reference to them (the
// Ends are passed by pointer only to keep the caller's frame small).
//
// When either side is a pipe or FIFO the bytes are spliced directly,
// except from a pipe into a socket; otherwise (file -> socket, socket
// -> socket, file -> file, pipe -> socket) they go through an
// intermediate pipe taken from pool and put back empty (a nil pool
// means a pipe made for this copy): see throughPipe. A regular-file src
// is read from its current offset and a regular-file dst written at its
// current offset; both offsets advance by the bytes copied.
//
// handled == false means nothing was moved because the kernel cannot
// splice this pair (EINVAL, ENOSYS, EOPNOTSUPP, an O_APPEND dst, a
// directory, a nil End or Conn, a regular-file src that splices as empty
// while read(2) reads bytes of it: a FUSE file of direct I/O whose size
// reads as 0, such as the /proc files lxcfs serves), or should not (a
// terminal dst in blocking mode: no poll(2) tells how much it takes, and
// a splice into it could block holding a pipe's lock): the caller should
// copy in userspace. A pair the kernel refuses only after bytes moved,
// or once bytes it refuses to take are in the intermediate pipe and
// cannot be put back into src (an O_DIRECT file dst and a socket's
// pages), is finished by Copy itself with read(2) and write(2) through a
// userspace buffer.
// Otherwise err is nil when src reached EOF (or limit bytes were
// copied), and else the first error: the descriptor's, from Conn
// (closed by another goroutine: net.ErrClosed from a net.Conn's; from
// an *os.File's, an error matching os.ErrClosed that wraps
// internal/poll's "use of closed file"), or an *os.SyscallError
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
// back by seeking a regular-file src back (unless another reader of the
// file has moved its offset since), or reported in the error (an
// *UndeliveredError within it). A pipe that still holds bytes is closed,
// never pooled.
//
// A pooled pipe is held only while bytes move through it: a copy waiting
// for input holds none, so a bounded pool serves any number of mostly
// idle copies. A copy never waits for a pipe: when the pool has none free
// (Pool.TryGet), a round goes through a userspace buffer instead. The
// source End's Pacer, if any, paces the reads; the destination End's
// Meter is told of the bytes as they arrive. Descriptors are inspected
// (fstat, fcntl F_GETFL) unless End.Info says what they are; a pipe side
// is inspected only if the copy has to wait on it.
func Copy(ctx context.Context, dst, src *End, limit int64, pool *Pool) (written int64, handled bool, err error) {
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
	handled, err = c.copy(pool)
	written = c.written
	c.release()
	return written, handled, err
}

// copy is Copy once c holds its ends.
func (c *copier) copy(pool *Pool) (handled bool, err error) {
	c.src.apply(c.src.Info)
	c.dst.apply(c.dst.Info)
	// Which path, and whether the pair can be spliced at all, depends on
	// what the descriptors are. A pipe side needs no inspection up front
	// (SPLICE_F_NONBLOCK keeps it from blocking, and the kernel refuses
	// what it cannot splice before moving anything); the other side must
	// be known, so that a blocking socket is bounded (boundBlocking).
	if !c.src.pipe() {
		if err := c.src.inspect(); err != nil {
			return true, fd.ClosedErr(err, c.src.Conn, nil)
		}
	}
	if !c.dst.pipe() {
		if err := c.dst.inspect(); err != nil {
			return true, fd.ClosedErr(err, c.dst.Conn, nil)
		}
	}
	if (c.src.known && !c.src.spliceable()) || (c.dst.known && (!c.dst.spliceable() || c.dst.appendOnly)) || c.dst.blockingTTY() {
		return false, nil
	}
	if c.src.pipe() && c.throughPipe() {
		// viaPipe waits for src itself: on the netpoller where src is
		// non-blocking, so it must know.
		if err := c.src.inspect(); err != nil {
			return true, fd.ClosedErr(err, c.src.Conn, nil)
		}
	}
	if err := c.ctx.Err(); err != nil {
		return true, ctxError(c.ctx, nil)
	}
	handled, err = c.moveBytes(pool)
	err = fd.ClosedErr(err, c.src.Conn, c.dst.Conn)
	if err != nil && c.ctx.Err() != nil {
		err = ctxError(c.ctx, err)
	}
	return handled, err
}

// moveBytes moves the bytes of a copy whose ends are known to splice,
// and undoes what the copy set up for itself before it returns. Its one
// return keeps its defers open-coded: no defer records on the stack.
func (c *copier) moveBytes(pool *Pool) (handled bool, err error) {
	c.wakeOnDone()
	defer c.stopWake()
	defer c.src.boundBlocking(unix.SO_RCVTIMEO)()
	defer c.dst.boundBlocking(unix.SO_SNDTIMEO)()
	c.pool = pool
	defer c.releaseBuffer()
	defer c.refund()
	if c.throughPipe() {
		handled, err = c.viaPipe()
	} else {
		handled, err = c.direct()
	}
	return handled, err
}

// throughPipe reports whether the copy moves its bytes through an
// intermediate pipe (viaPipe) rather than splicing src straight into dst
// (direct): where neither side is a pipe, and from a pipe into a
// socket. splice(2) from a pipe into a socket holds the source pipe's
// lock for the whole send, and its writer cannot refill the pipe
// meanwhile; moved first into a pipe of the copy's (a splice between
// pipes moves page references, under the source's lock for no longer
// than that), the bytes are sent while the writer refills
// (docs/benchmarks.md, "pipe -> TCP through a pool pipe"). Each send
// then asks for exactly what that pipe holds: a splice into TCP that
// asks for more than its pipe holds can leave the send's last partial
// segment unsent, as if more were coming (a message's tail held 40 ms
// and more over loopback). Bytes in the copy's pipe that dst does not
// take are dropped and reported, as for any source but a regular file.
func (c *copier) throughPipe() bool {
	if c.src.pipe() {
		return c.dst.socket()
	}
	return !c.dst.pipe()
}

// wakeOnDone arranges for the ends' Wake to be called when the copy's
// context ends (fd.Waker); stopWake, deferred by the caller, undoes it
// when the copy returns: it cancels that or, if Wake ran, waits for it
// and calls Reset. The state lives in the copier, so that only the
// Waker's arming allocates (fd.Waker).
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
	writeOnly  bool   // O_WRONLY: a read of it fails at once (EBADF)
	unixStream bool   // an AF_UNIX stream socket: a splice from it answers 0 only at its end
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
	s.writeOnly = info.Flags&unix.O_ACCMODE == unix.O_WRONLY
	s.unixStream = info.Mode == unix.S_IFSOCK && info.Family == unix.AF_UNIX
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

// readBlocks reports a character device in blocking mode (a tty, as
// term.MakeRaw on its *os.File leaves it): a read of it, by read(2) or
// splice(2), waits in the kernel for input whatever SPLICE_F_NONBLOCK
// says, and a splice into a pipe holds the pipe's lock meanwhile, so
// that the pipe's reader cannot take the bytes already in it. Such a
// source is read only once poll(2) reports input (noInput). One opened
// write-only is not: poll(2) never reports input there, and the read
// fails at once (EBADF), as io.Copy's does.
func (s *side) readBlocks() bool { return s.mode == unix.S_IFCHR && !s.nonblock && !s.writeOnly }

// writeWaits reports a destination a write(2) of which waits in the
// kernel for room, where neither the context nor Close reach it: a pipe
// in blocking mode. writeAll writes one only once poll(2) reports room,
// and at most pipeBuf bytes a call, which a pipe with room takes whole.
func (s *side) writeWaits() bool { return s.mode == unix.S_IFIFO && !s.nonblock }

// pipeBuf is PIPE_BUF on Linux: a write(2) of at most this many bytes
// into a pipe that poll(2) reports writable (a free slot) does not wait.
const pipeBuf = 4096

// blockingTTY reports a terminal in blocking mode (a pty master after
// f.Fd() or term.MakeRaw, a serial port). A write to one, by write(2)
// or splice(2), waits in the kernel until all of it fits, whatever
// SPLICE_F_NONBLOCK says, and nothing tells beforehand how much fits;
// a splice from a pipe would hold that pipe's lock meanwhile, so that
// the pipe's writers wait in the kernel too. Copy refuses such a
// destination (the caller copies through userspace, as io.Copy does,
// holding no pipe). One ioctl(2) (TCGETS), for a blocking character
// device only.
func (s *side) blockingTTY() bool {
	if s.mode != unix.S_IFCHR || s.nonblock {
		return false
	}
	tty := false
	s.Conn.Control(func(fd uintptr) {
		_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		tty = err == nil
	})
	return tty
}

// noInput reports a source that readBlocks with no input now (poll(2),
// no wait): the read is then treated as EAGAIN. Error and hang-up count
// as input: the read reports them.
func (c *copier) noInput(fd int) bool {
	return c.src.readBlocks() && !pollFd(fd, unix.POLLIN, 0)
}

// readWaits reports a source a read(2) of which waits in the kernel for
// input: one that readBlocks, or a pipe in blocking mode, which a splice
// does not wait on (SPLICE_F_NONBLOCK) but read(2) does.
func (s *side) readWaits() bool {
	return s.readBlocks() || (s.mode == unix.S_IFIFO && !s.nonblock && !s.writeOnly)
}

// noReadInput is noInput for a read(2) of src (bufferRound): a source
// that readWaits with no input now.
func (c *copier) noReadInput(fd int) bool {
	return c.src.readWaits() && !pollFd(fd, unix.POLLIN, 0)
}

// copier is one Copy (or Drain) in progress.
type copier struct {
	ctx      context.Context
	limit    int64
	written  int64
	src, dst side
	pool     *Pool
	buf      *[]byte // from pool.buffer, for rounds splice cannot make
	budget   int     // bytes the src's Pacer granted and the copy has not read
	// unspliced: dst refused a splice after bytes had moved (an O_DIRECT
	// file): the copy goes on as io.Copy, in reads and writes of its
	// buffer's size (roundBuffer).
	unspliced bool
	// bufRead: a buffer round read bytes of src, which a splice of it
	// may not find (see readsMore).
	bufRead bool

	waker fd.Waker // wakeOnDone's

	// What the last RawConn callback found: the step the copy takes
	// next, and the error of stepFail.
	next step
	err  error

	callbacks

	// direct's: the destination's descriptor while its Write callback
	// runs, the side the copy last waited for, and the backoff of
	// stepRetry.
	wfd      int
	lastWait step // stepWaitSrc or stepWaitDst; stepRound before any wait
	backoff  time.Duration
	retryAt  int64 // c.written at the last againUnmoved; -1 before any

	// srcOff is a regular-file src's offset just after the copy's last
	// read of it, learnt at its first read that may need putting back
	// (noteOffset), -1 before: seekBack puts bytes back only where no
	// other reader of the file has moved the offset since.
	srcOff int64

	// Sendfile's: the source's descriptor while its Read callback runs
	// (sendLocked), and whether its calls take turns of src's Gate now
	// (sendfile).
	sfd       int
	takeTurns bool

	// The intermediate-pipe path's (viaPipe): the pipe held now, how the
	// next fill reads a socket src, and the callbacks that fill and
	// drain the pipe.
	p       *Pipe
	read    readMode
	peekBuf [1]byte // peek's buffer

	rb readResult // readBuffer's, while its callback runs
}

// callbacks are a copier's RawConn callbacks: method values, made once
// per copier (each is an allocation), so that neither a round nor a
// recycled copier's copy makes any.
type callbacks struct {
	srcFn, dstFn    func(uintptr) bool // direct's spliceFromSrc, spliceIntoDst
	fillFn, drainFn func(uintptr) bool // viaPipe's fillPipe, drainPipe
	sendFn, chunkFn func(uintptr) bool // Sendfile's sendLocked, sendOne
	readFn          func(uintptr) bool // bufferRound's readInto
}

// copiers recycles copiers between copies, as Go's internal/poll
// recycles its splice pipes: a copier is a few hundred bytes and seven
// callbacks, which a copy would otherwise allocate (docs/benchmarks.md,
// "Per-copy cost"). It holds no state between copies: release clears
// all but the callbacks.
var copiers = sync.Pool{New: func() any {
	c := new(copier)
	c.callbacks = callbacks{
		srcFn: c.spliceFromSrc, dstFn: c.spliceIntoDst,
		fillFn: c.fillPipe, drainFn: c.drainPipe,
		sendFn: c.sendLocked, chunkFn: c.sendOne,
		readFn: c.readInto,
	}
	return c
}}

// newCopier returns a copier for a copy of up to limit bytes (limit < 0:
// until EOF) from src to dst. The copy releases it once it has returned.
func newCopier(ctx context.Context, limit int64, dst, src *End) *copier {
	c := copiers.Get().(*copier)
	c.ctx, c.limit, c.srcOff, c.retryAt = ctx, limit, -1, -1
	c.src.End = *src
	c.dst.End = *dst
	return c
}

// release clears c and gives it back for another copy. The copy must be
// over: no callback of c runs, and its Waker is stopped.
func (c *copier) release() {
	cb := c.callbacks
	*c = copier{}
	c.callbacks = cb
	copiers.Put(c)
}

// step is the state of a copy loop (direct, viaPipe): what it does next.
// The loop holds it in one variable and dispatches on it; each step
// returns the next, and the three last ones end the copy.
type step uint8

const (
	// stepRound starts a round: the limit, the context and the Pacer are
	// checked, then bytes move.
	stepRound step = iota
	// stepWaitSrc: src has nothing to read; wait for input.
	stepWaitSrc
	// stepWaitDst: dst had no room: wait for room before the next
	// round (direct, Sendfile).
	stepWaitDst
	// stepDrain: viaPipe's fill put bytes in the pipe; drain them all.
	stepDrain
	// stepBuffer: a round splice cannot make goes through a userspace
	// buffer (bufferRound): a socket src answered 0 (EOF, or TCP's
	// urgent mark) or EAGAIN at the urgent mark, or no pipe was free.
	stepBuffer
	// stepRetry: a direct splice answered EAGAIN, yet both sides look
	// ready.
	stepRetry
	// stepBlocked: a direct splice answered EAGAIN and both sides are
	// on the netpoller: awaitBlocked finds which one is not ready.
	stepBlocked
	// stepUnspliced: the kernel refused a splice of the pair after
	// bytes had moved (dst opened O_DIRECT, say, and pages it cannot
	// take): this and every later round go through a userspace buffer
	// (unsplicedRound), whatever loop the copy started in.
	stepUnspliced
	// stepDone: src reached EOF, or limit bytes were copied.
	stepDone
	// stepRefused: the kernel refuses to splice the pair and nothing
	// was moved (or what was is back in a regular-file src): the caller
	// copies in userspace.
	stepRefused
	// stepFail: the copy failed with c.err.
	stepFail
)

// readMode is how viaPipe's next fill reads a socket src. Only a socket
// src leaves readSplice.
type readMode uint8

const (
	// readSplice: splice first; a short fill moves to readProbe.
	readSplice readMode = iota
	// readProbe: the last fill was short, the usual end of a message:
	// peek (recv MSG_PEEK) before splicing. A probe that finds input
	// moves to readStream; one that finds none, back to readSplice.
	readProbe
	// readStream: a probe found more input (a stream arriving in
	// pieces): splice first and stay here after short fills, until a
	// splice finds the socket empty (back to readSplice). A probe that
	// finds input costs a system call more than a splice.
	readStream
)

// againUnmoved records a splice that answered EAGAIN although both
// sides look ready (direct) or src has input (viaPipe), and reports
// whether the last such splice came with no byte moved since. One alone
// is a race with the peer (input or room came after the splice); two in
// a row, from a socket src, are TCP's urgent mark, where splice answers
// EAGAIN for as long as the marked byte is unread.
func (c *copier) againUnmoved() bool {
	repeat := c.written == c.retryAt
	c.retryAt = c.written
	return repeat
}

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
	return c.take(c.chunkUnpaced(maxChunk))
}

// paceFor asks, when the copy is paced, for what it needs to read want
// bytes in one read: after pace, a budget short of want (what is left
// of a grant, of any length) is topped up by one more grant, of the
// difference, which the Pacer may cut (a smaller bucket: io.Copy's
// paced read is as short then). A copy that goes on as io.Copy once dst
// refused its splices (an O_DIRECT file) reads a whole buffer, as
// io.Copy's paced reads (RateLimitedReader) do, and not the tail of a
// grant: dst may take only lengths such as the buffer's.
func (c *copier) paceFor(want int) error {
	if c.src.Pacer == nil || c.budget >= want {
		return nil
	}
	if err := c.pace(); err != nil || c.budget >= want {
		return err
	}
	return c.take(want - c.budget)
}

// take asks the Pacer for want more bytes, and adds its grant to the
// budget.
func (c *copier) take(want int) error {
	n, err := c.src.Pacer.Take(c.ctx, want)
	switch {
	case err != nil && c.ctx.Err() != nil:
		return ctxError(c.ctx, err)
	case err != nil:
		return fmt.Errorf("splice: pacer: %w", err)
	case n < 1:
		return fmt.Errorf("splice: Pacer.Take(%d) granted %d bytes: %w", want, n, io.ErrNoProgress)
	}
	c.budget += n
	return nil
}

// chunkUnpaced is chunk without the Pacer's budget.
func (c *copier) chunkUnpaced(max int) int {
	if c.limit >= 0 && c.limit-c.written < int64(max) {
		return int(c.limit - c.written)
	}
	return max
}

// spent records n bytes read from a paced source; spent(-n), n bytes
// put back into it (seekBack), whose grant refund then gives back.
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

// beginRound runs before a round reads from src: it fails when the
// context ended, and waits for the Pacer's grant when the copy is paced.
func (c *copier) beginRound() error {
	if c.ctx.Err() != nil {
		return ctxError(c.ctx, nil)
	}
	return c.pace()
}

// stop ends the copy with err, as it is.
func (c *copier) stop(err error) step {
	c.err = err
	return stepFail
}

// fail ends the copy with the error a splice (or peek) returned: when it
// is the kernel refusing the pair (fd.Refused), stepRefused if nothing
// was moved yet, else the copy goes on in buffer rounds (stepUnspliced:
// a refused splice moves nothing, so the bytes are still in src); an
// errno is wrapped in an *os.SyscallError; any other error (from a
// RawConn, or the context's) ends the copy as it is.
func (c *copier) fail(err error) step {
	errno, ok := err.(syscall.Errno)
	switch {
	case !ok:
		return c.stop(err)
	case c.written == 0 && fd.Refused(errno):
		return stepRefused
	case fd.Refused(errno):
		c.dropPipe(nil) // viaPipe's, empty: a refused fill moved nothing
		c.unspliced = true
		return stepUnspliced
	}
	return c.stop(os.NewSyscallError("splice", errno))
}

// bufferStep makes a round where splice cannot (stepBuffer; see
// bufferRound), and waits for input if src had none.
func (c *copier) bufferStep() step {
	eof, err := c.throughBuffer()
	switch {
	case err != nil:
		return c.stop(err)
	case eof:
		return stepDone
	}
	return stepRound
}

// unsplicedRound takes stepUnspliced, a round of a copy the kernel
// refused to splice after bytes had moved: it checks the limit and the
// context, then makes a buffer round (bufferStep), as io.Copy would, and
// stays in stepUnspliced until the copy ends.
func (c *copier) unsplicedRound() step {
	if !c.more() {
		return stepDone
	}
	if c.ctx.Err() != nil {
		return c.stop(ctxError(c.ctx, nil))
	}
	if st := c.bufferStep(); st != stepRound {
		return st
	}
	return stepUnspliced
}

// run drives a copy loop, the state of which is one step: starting at
// stepRound, it replaces the step by what next returns for it (by
// unsplicedRound's for stepUnspliced, the same in every loop) until the
// copy ends (stepDone, stepRefused, stepFail), and returns Copy's
// outcome.
func (c *copier) run(next func(step) step) (handled bool, err error) {
	st := stepRound
	for st < stepDone {
		if st == stepUnspliced {
			st = c.unsplicedRound()
		} else {
			st = next(st)
		}
	}
	switch st {
	case stepDone:
		return true, nil
	case stepRefused:
		return false, nil
	}
	return true, c.err
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

// pollFd is fd.Poll, for the copy loops, whose descriptors are named fd.
func pollFd(d int, events int16, timeout time.Duration) bool { return fd.Poll(d, events, timeout) }

// bufferRound moves up to one buffer of bytes from src to dst through
// userspace: one read(2) from src, then write(2) until dst has all of
// them, waiting for room as drain does. It makes the rounds splice
// cannot: one for which no pipe is free, and one at TCP's urgent mark,
// where splice returns 0 as if at EOF while read(2) steps over the urgent
// byte (not inline: SO_OOBINLINE unset) and goes on, as io.Copy's does.
// A source a read(2) of which would wait in the kernel (readWaits: a
// pipe in blocking mode, a copy that went on in buffer rounds once the
// kernel refused its splices) is read only once poll(2) reports input.
// eof reports that read returned 0, again that src had no input. Bytes
// read and not delivered are un-read or reported (unread).
func (c *copier) bufferRound() (eof, again bool, err error) {
	full := c.roundBuffer()
	// A pipe side is not inspected up front; writeAll must know whether
	// dst is a pipe in blocking mode (writeWaits) before it writes.
	if err := c.src.inspectMode(); err != nil {
		return false, false, err
	}
	if err := c.dst.inspectMode(); err != nil {
		return false, false, err
	}
	if err := c.paceRound(len(full)); err != nil {
		return false, false, err
	}
	buf := full[:c.chunk(len(full))]
	n, eof, again, err := c.readBuffer(buf)
	if c.src.bufferRead != nil && !again {
		c.src.bufferRead(n)
	}
	if n == 0 {
		return eof, again, err
	}
	left, err := c.writeAll(buf[:n])
	if err != nil {
		if c.ctx.Err() != nil {
			err = ctxError(c.ctx, err)
		}
		return false, false, c.unread(left, err)
	}
	return false, false, nil
}

// paceRound paces a buffer round that reads up to max bytes: with a
// grant for all of them once the copy is unspliced (paceFor), else as
// a splice round is (pace). A round that is not unspliced reads what
// is left of its grant: most are the read that finds a socket's EOF,
// which reads nothing, and must not wait for a grant it cannot use (a
// wait for a grant may hold the copy's pipe).
func (c *copier) paceRound(max int) error {
	if c.unspliced {
		return c.paceFor(c.chunkUnpaced(max))
	}
	return c.pace()
}

// copyBuffer is the size of io.Copy's buffer.
const copyBuffer = 32 << 10

// roundBuffer returns the buffer of a round through userspace, taken
// from the pool on first use: all of it, or, once the copy is unspliced,
// io.Copy's size of it. A destination that refuses splices may refuse
// lengths too (an O_DIRECT file takes only aligned ones), and a copy
// that goes on as io.Copy must then write what io.Copy writes, so that
// it delivers the bytes io.Copy delivers before the same error.
func (c *copier) roundBuffer() []byte {
	if c.buf == nil {
		c.buf = c.pool.buffer()
	}
	b := *c.buf
	if c.unspliced {
		b = b[:min(len(b), copyBuffer)]
	}
	return b
}

// readBuffer makes one read(2) from src into b, bufferRound's: n bytes
// were read, or none and eof reports src's end, again that src had no
// input (a src whose read would wait in the kernel is read only once
// poll(2) reports input), or err the failure.
func (c *copier) readBuffer(b []byte) (n int, eof, again bool, err error) {
	c.rb = readResult{buf: b}
	if rerr := c.src.Conn.Read(c.readFn); rerr != nil {
		c.rb = readResult{}
		return 0, false, false, rerr
	}
	r := c.rb
	c.rb = readResult{}
	c.spent(r.n)
	return r.n, r.eof, r.again, r.err
}

// readResult is what readInto, readBuffer's RawConn callback, was given
// (buf) and found.
type readResult struct {
	buf   []byte
	n     int
	eof   bool
	again bool
	err   error
}

// readInto is readBuffer's RawConn callback: one read(2) of fd into
// c.rb.buf, its outcome left in c.rb.
func (c *copier) readInto(fd uintptr) bool {
	if c.noReadInput(int(fd)) {
		c.rb.again = true
		return true
	}
	c.noteOffset(int(fd))
	for {
		m, e := unix.Read(int(fd), c.rb.buf)
		switch {
		case e == unix.EINTR:
			continue
		case m > 0:
			c.rb.n = m
			c.readSrc(m)
			c.bufRead = true
		case e == nil:
			c.rb.eof = true
		case e == unix.EAGAIN:
			c.rb.again = true
		default:
			c.rb.err = os.NewSyscallError("read", e)
		}
		return true
	}
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
// poll(2) slices for a blocking dst, each outside dst's Conn.Write, so
// that a Close of dst meanwhile ends the copy), and returns how many
// bytes of b it could not write when it fails. The written count grows
// as bytes go. dst has been inspected (bufferRound, or Copy up front).
func (c *copier) writeAll(b []byte) (left int, err error) {
	for len(b) > 0 {
		werr := c.dst.Conn.Write(func(fd uintptr) bool {
			for len(b) > 0 {
				n := len(b)
				if c.dst.writeWaits() {
					if !pollFd(int(fd), unix.POLLOUT, blockingPoll) {
						if c.ctx.Err() != nil {
							err = ctxError(c.ctx, nil)
							return true
						}
						// No room yet: leave the callback, so that the
						// next Conn.Write sees a Close, and poll again.
						return true
					}
					n = min(n, pipeBuf)
				}
				m, e := unix.Write(int(fd), b[:n])
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
					err = errTookNone
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
	lost := &UndeliveredError{N: int64(left)}
	if err == nil {
		return lost
	}
	return fmt.Errorf("%w (%w)", err, lost)
}

// UndeliveredError is part of a failed or cancelled copy's error where N
// bytes it read from the source did not reach the destination and could
// not be put back (a source other than a regular file, or a file whose
// offset another reader has moved since): the copy
// consumed N + written bytes of the source, as io.Copy consumes what it
// read and could not write. errors.As finds it in the error.
type UndeliveredError struct {
	N int64
}

// Error says how many bytes read from the source were not delivered.
func (e *UndeliveredError) Error() string {
	return fmt.Sprintf("splice: %d bytes read from the source were not delivered", e.N)
}

// seekBack moves a regular-file src's offset back over the n bytes the
// copy read last, where no other reader of the file has moved it since
// (fd.Unread, srcOff); a paced copy's grant for them is refunded with
// the rest of its budget.
func (c *copier) seekBack(n int) error {
	end := c.srcOff
	if err := fd.Unread(c.src.Conn, end, int64(n)); err != nil {
		return err
	}
	if end >= 0 {
		c.srcOff = end - int64(n)
	}
	c.spent(-n) // not read after all
	return nil
}

// noteOffset learns a regular-file src's offset at the copy's first read
// of it (srcOff), which the copy then follows by the bytes it reads
// (readSrc). It runs inside src's Conn.Read callback, before that read.
func (c *copier) noteOffset(sysfd int) {
	if c.srcOff < 0 && c.src.mode == unix.S_IFREG {
		if off, err := unix.Seek(sysfd, 0, io.SeekCurrent); err == nil {
			c.srcOff = off
		}
	}
}

// errTookNone is the error of a copy whose destination took none of the
// bytes it was given: a write(2) or splice(2) into it returned 0, as
// into a FUSE file whose server answers a write with 0 bytes written.
// It matches io.ErrUnexpectedEOF, as the error of an *os.File's Write
// (io.Copy's) does then.
var errTookNone = fmt.Errorf("splice: the destination took none of the bytes: %w", io.ErrUnexpectedEOF)

// holdsBytes reports whether the pipe fd has bytes to read (FIONREAD).
func holdsBytes(fd int) bool {
	n, err := unix.IoctlGetInt(fd, unix.TIOCINQ)
	return err == nil && n > 0
}

// readsMore is fd.ReadsMore, for the copy loops, whose descriptors
// are named fd: a regular-file src that splice(2) found at its end
// before the copy moved any byte, yet read(2) has bytes of (a file whose
// size is reported as 0, as the /proc files lxcfs serves in containers
// are), is not handled, and goes through userspace as io.Copy reads it.
// It costs a copy that finds its file empty a pread(2), and an lseek(2)
// where the copy does not know the file's offset: off < 0 (the pipe
// loop knows it, srcOff; the direct loop does not follow it).
func readsMore(d int, off int64) bool {
	if off >= 0 {
		return fd.ReadsMoreAt(d, off)
	}
	return fd.ReadsMore(d)
}

// mayReadMore reports whether a splice that found the regular-file src
// d, at offset off (< 0: unknown), at its end is asked readsMore: where
// the copy has moved no byte, or where a buffer round read some (when
// no pool pipe was free, say), the bytes of a file that splices as
// empty; a copy that spliced bytes of it is not asked, and costs nothing
// more.
func (c *copier) mayReadMore(d int, off int64) bool {
	return c.src.mode == unix.S_IFREG && (c.written == 0 || c.bufRead) && readsMore(d, off)
}

// splicedEmpty is the step of a copy whose splice found its src at its
// end where read(2) finds bytes (mayReadMore): not handled where it has
// moved nothing, as io.Copy reads the file then; else it goes on in
// buffer rounds (stepUnspliced) to the file's end, giving back the
// (empty) pipe a fill holds.
func (c *copier) splicedEmpty() step {
	if c.written == 0 {
		return stepRefused
	}
	c.putPipe()
	c.unspliced = true
	return stepUnspliced
}

// readSrc records n bytes read from src, past srcOff if it is known.
func (c *copier) readSrc(n int) {
	if c.srcOff >= 0 {
		c.srcOff += int64(n)
	}
}
