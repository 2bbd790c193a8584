package pipes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/ring"
)

// uring is an engine's io_uring: one goroutine, locked to its OS thread,
// owns the ring and does every submission and every reap. Copies hand it
// chains of operations through pending; it batches all that are pending
// into one io_uring_enter. Completions are signalled by an eventfd
// registered with the ring and read through the Go netpoller, so no thread
// is parked per copy and none spins.
//
// Two kinds of copy use the ring (uring_copy_linux.go), both only from a
// regular file, and only once enough file copies run at once to gain
// from a bound on threads: to a stream socket, a copy whose next chunk is
// not in the page cache runs wholly on io-wq workers as linked chains
// (SPLICE file -> pipe, POLL_ADD, SPLICE pipe -> socket); to anything
// else, reads that miss the page cache go through the ring and the pipe
// is drained with splice(2) on the netpoller.
type uring struct {
	r      *ring.Ring
	st     *counters
	efd    *os.File // eventfd, O_NONBLOCK: read through the netpoller
	sqPoll bool

	mu      sync.Mutex
	pending []*ringChain // to submit
	cancels []*ringChain // to cancel
	closing bool
	broken  error // set by the loop if io_uring_enter fails for good
	nextID  uint64

	wake   chan struct{} // cap 1: pending, cancels or closing changed
	cqWake chan struct{} // cap 1: the eventfd fired
	loopWG sync.WaitGroup
}

// ringOp is one SQE of a chain: IORING_OP_SPLICE or IORING_OP_POLL_ADD.
type ringOp struct {
	id     uint64
	opcode uint8
	fd     int32 // SPLICE: fd_out; POLL_ADD: the polled fd
	fdIn   int32 // SPLICE
	offIn  int64 // SPLICE: offset in fdIn, -1 for a pipe or socket
	nbytes uint32
	events uint32 // POLL_ADD
	chain  *ringChain

	// Set by the loop; read by the copy once the chain is done.
	res      int32
	complete bool
}

// ringChain is a sequence of ops submitted together, each linked to the
// next: with IOSQE_IO_HARDLINK an op starts when the one before it has
// completed, whatever its result; with IOSQE_IO_LINK only when it succeeded
// in full (a failure or a short SPLICE completes the rest with
// -ECANCELED). A chain of one op is a plain request. The copy that owns it
// may reuse it once done has fired.
type ringChain struct {
	ops      []ringOp
	hardlink bool
	done     chan struct{} // cap 1: a token once every op has completed

	// Loop-owned state.
	left       int  // ops without a CQE yet
	cancelled  bool // the copy asked to cancel it
	cancelling bool // an ASYNC_CANCEL SQE for it is in flight
}

// reset readies the chain for n ops, to be filled in by the caller.
func (c *ringChain) reset(n int) {
	if c.done == nil {
		c.done = make(chan struct{}, 1)
	}
	c.ops = c.ops[:0]
	for range n {
		c.ops = append(c.ops, ringOp{chain: c})
	}
	c.hardlink, c.left, c.cancelled, c.cancelling = false, 0, false, false
}

// first returns the first op without a CQE, or nil.
func (c *ringChain) first() *ringOp {
	for i := range c.ops {
		if !c.ops[i].complete {
			return &c.ops[i]
		}
	}
	return nil
}

// cancelTag marks the user_data of ASYNC_CANCEL SQEs.
const cancelTag = 1 << 63

// errRingUnsupported reports a kernel whose ring lacks IORING_OP_SPLICE.
var errRingUnsupported = errors.New("io_uring lacks IORING_OP_SPLICE (Linux 5.7)")

func newURing(cfg *config, st *counters) (*uring, error) {
	if cfg.setupHook != nil {
		if err := cfg.setupHook(); err != nil {
			return nil, err
		}
	}
	r, err := setupRing(cfg)
	if err != nil {
		return nil, err
	}
	u := &uring{r: r, st: st, sqPoll: cfg.sqPoll, wake: make(chan struct{}, 1), cqWake: make(chan struct{}, 1)}
	if err := u.init(cfg); err != nil {
		r.Close()
		return nil, err
	}
	return u, nil
}

// setupRing creates the ring, asking for the flags that cut overhead
// where the kernel has them and retrying without them where it does not.
func setupRing(cfg *config) (*ring.Ring, error) {
	base := uint32(ring.IORING_SETUP_CLAMP)
	if cfg.sqPoll {
		base |= ring.IORING_SETUP_SQPOLL
	}
	tries := []uint32{
		base | ring.IORING_SETUP_SUBMIT_ALL | ring.IORING_SETUP_COOP_TASKRUN, // 5.19
		base,
	}
	var err error
	for _, flags := range tries {
		p := &ring.Params{Flags: flags}
		if cfg.sqPoll {
			p.SQThreadIdle = 50 // ms
		}
		var r *ring.Ring
		r, err = ring.Setup(cfg.ringEntries, p)
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, unix.EINVAL) {
			return nil, err
		}
	}
	return nil, err
}

func (u *uring) init(cfg *config) error {
	probe, err := u.r.Probe()
	if err != nil {
		return err
	}
	if !probe.Supported(ring.IORING_OP_SPLICE) || !probe.Supported(ring.IORING_OP_ASYNC_CANCEL) {
		return errRingUnsupported
	}
	if cfg.iowqMaxWorkers > 0 {
		// Linux 5.15. Older kernels answer EINVAL: run uncapped.
		_, _, err := u.r.RegisterIOWQMaxWorkers(cfg.iowqMaxWorkers, cfg.iowqMaxWorkers)
		if err != nil && !errors.Is(err, unix.EINVAL) {
			return err
		}
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	if err := u.r.RegisterEventfd(efd); err != nil {
		unix.Close(efd)
		return err
	}
	u.efd = os.NewFile(uintptr(efd), "pipes-ring-eventfd")
	u.loopWG.Add(2)
	go u.readEventfd()
	go u.loop()
	return nil
}

// close stops the loop once no operation is in flight (the engine has
// waited for its copies by then), and releases the ring and the eventfd.
func (u *uring) close() error {
	u.mu.Lock()
	u.closing = true
	u.mu.Unlock()
	u.poke()
	u.efd.Close() // ends readEventfd
	u.loopWG.Wait()
	return u.r.Close()
}

func (u *uring) poke() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// readEventfd turns eventfd counts into wake-ups of the loop. It resets
// the count before it signals, so no completion posted after a reap goes
// unnoticed.
func (u *uring) readEventfd() {
	defer u.loopWG.Done()
	var b [8]byte
	for {
		if _, err := u.efd.Read(b[:]); err != nil {
			return
		}
		select {
		case u.cqWake <- struct{}{}:
		default:
		}
	}
}

// loop owns the ring. It is locked to one OS thread because the kernel
// keeps one io-wq (and applies the worker cap) per submitting thread.
func (u *uring) loop() {
	defer u.loopWG.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	l := newLoopState()
	for {
		select {
		case <-u.wake:
		case <-u.cqWake:
		}
		// Let the goroutines that are runnable now (copies woken by the
		// last reap, new CopyAsync calls) queue their chains first, so
		// that one io_uring_enter carries them all.
		runtime.Gosched()
		u.reap(l)
		if u.queue(l) {
			return
		}
	}
}

// queue prepares the SQEs of the chains and cancels copies have handed
// over and submits them. It reports whether the loop is done: the engine
// is closing and nothing is in flight.
func (u *uring) queue(l *loopState) (done bool) {
	u.mu.Lock()
	pending, cancels, closing, broken := u.pending, u.cancels, u.closing, u.broken
	u.pending, u.cancels = nil, nil
	u.mu.Unlock()
	if broken != nil {
		for _, c := range pending {
			u.failChain(c, broken)
		}
		pending = nil
	}

	for _, c := range pending {
		if u.r.SQSpaceLeft() < uint32(len(c.ops)) {
			// A chain must not straddle two submissions: the
			// kernel ends a link at the end of each one.
			u.submit(l)
		}
		for i := range c.ops {
			op := &c.ops[i]
			sqe := u.getSQE(l)
			switch op.opcode {
			case ring.IORING_OP_SPLICE:
				sqe.PrepSplice(op.fdIn, op.offIn, op.fd, -1, op.nbytes, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			case ring.IORING_OP_POLL_ADD:
				sqe.PrepPollAdd(op.fd, op.events)
			}
			switch {
			case i == len(c.ops)-1:
			case c.hardlink:
				sqe.Flags |= ring.IOSQE_IO_HARDLINK
			default:
				sqe.Flags |= ring.IOSQE_IO_LINK
			}
			sqe.UserData = op.id
			l.inFlight[op.id] = op
		}
		c.left = len(c.ops)
	}
	for _, c := range cancels {
		if c.left > 0 {
			c.cancelled = true
			l.aborting[c] = struct{}{}
		}
	}
	u.cancelAborting(l)
	u.submit(l)
	return closing && len(l.inFlight) == 0
}

// loopState is what the loop goroutine alone touches.
type loopState struct {
	inFlight map[uint64]*ringOp
	aborting map[*ringChain]struct{} // cancelled chains not yet done
	cqes     []ring.CQE
}

func newLoopState() *loopState {
	return &loopState{
		inFlight: make(map[uint64]*ringOp),
		aborting: make(map[*ringChain]struct{}),
		cqes:     make([]ring.CQE, 256),
	}
}

// cancelAborting queues an IORING_OP_ASYNC_CANCEL for the first pending op
// of each cancelled chain that has none in flight. The rest of a chain is
// not armed yet and cannot be cancelled; it completes with -ECANCELED
// once the op before it fails, or gets its own cancel once that op has
// completed with success.
func (u *uring) cancelAborting(l *loopState) {
	for c := range l.aborting {
		if c.left == 0 {
			delete(l.aborting, c)
			continue
		}
		if c.cancelling {
			continue
		}
		op := c.first()
		sqe := u.getSQE(l)
		sqe.PrepCancel64(op.id, 0)
		sqe.UserData = cancelTag | op.id
		c.cancelling = true
	}
}

// getSQE returns a free SQE, submitting what is queued when the SQ is full.
func (u *uring) getSQE(l *loopState) *ring.SQE {
	for {
		if sqe := u.r.GetSQE(); sqe != nil {
			return sqe
		}
		u.submit(l)
	}
}

// submit hands every queued SQE to the kernel. EBUSY (the CQ is full and
// the kernel holds overflowed CQEs) and EAGAIN are answered by reaping
// and trying again.
func (u *uring) submit(l *loopState) {
	for u.r.SQReady() > 0 {
		n, err := u.r.Submit()
		u.st.enters.Add(1)
		if n > 0 {
			u.st.sqes.Add(uint64(n))
		}
		switch {
		case err == nil:
			if u.sqPoll || n == 0 {
				// The SQ thread consumes the SQEs in its own time.
				return
			}
		case errors.Is(err, unix.EBUSY), errors.Is(err, unix.EAGAIN):
			u.reap(l)
			runtime.Gosched()
		default:
			// The ring is unusable (io_uring_enter failed with an
			// error it is not documented to return in use): fail
			// every op, and every later one, rather than leave a
			// copy waiting for a completion that will not come.
			u.fail(l, err)
			return
		}
	}
}

// fail completes every op in flight with err's errno and makes later
// submissions fail the same way.
func (u *uring) fail(l *loopState, err error) {
	u.mu.Lock()
	u.broken = err
	u.mu.Unlock()
	for _, op := range l.inFlight {
		u.failChain(op.chain, err)
	}
	clear(l.inFlight)
	clear(l.aborting)
}

// failChain completes the ops of c that have no CQE with err's errno.
func (u *uring) failChain(c *ringChain, err error) {
	errno := unix.EIO
	errors.As(err, &errno)
	failed := false
	for i := range c.ops {
		if op := &c.ops[i]; !op.complete {
			op.res, op.complete = -int32(errno), true
			failed = true
		}
	}
	if failed {
		c.left = 0
		c.done <- struct{}{}
	}
}

// reap drains the CQ, recording each result in its op and waking the copy
// that owns a chain once all its ops have completed.
func (u *uring) reap(l *loopState) {
	retry := false
	for {
		n := u.r.PeekBatchCQE(l.cqes)
		if n == 0 {
			if u.r.CQOverflowPending() {
				if err := u.r.FlushOverflow(); err == nil {
					continue
				}
			}
			break
		}
		for _, cqe := range l.cqes[:n] {
			if cqe.UserData&cancelTag != 0 {
				// The answer to an ASYNC_CANCEL. -ENOENT: the op was
				// not armed yet (its link was being issued) or has
				// completed; the next pass asks again if it is
				// still pending. 0 or -EALREADY: it completes soon.
				op := l.inFlight[cqe.UserData&^cancelTag]
				if op != nil {
					op.chain.cancelling = false
					if cqe.Res == -int32(unix.ENOENT) {
						retry = true
					} else {
						op.chain.cancelling = true // wait for its CQE
					}
				}
				continue
			}
			op := l.inFlight[cqe.UserData]
			if op == nil {
				continue
			}
			delete(l.inFlight, cqe.UserData)
			c := op.chain
			op.res, op.complete = cqe.Res, true
			c.left--
			c.cancelling = false
			if c.left == 0 {
				delete(l.aborting, c)
				c.done <- struct{}{}
			}
		}
		u.r.CQAdvance(uint32(n))
		u.st.cqes.Add(uint64(n))
	}
	if retry {
		u.poke()
	}
}

// submitChain queues c, filled in by the caller, for the loop. It fails
// with ErrClosed once the engine is closing.
func (u *uring) submitChain(c *ringChain) error {
	u.mu.Lock()
	if u.closing {
		u.mu.Unlock()
		return ErrClosed
	}
	if u.broken != nil {
		err := u.broken
		u.mu.Unlock()
		return err
	}
	for i := range c.ops {
		u.nextID++
		c.ops[i].id = u.nextID
	}
	u.pending = append(u.pending, c)
	u.mu.Unlock()
	u.poke()
	return nil
}

// cancelChain asks the loop to cancel what of c is still pending. The copy
// must still wait for c.done: the ops' fds and pipes must outlive them.
func (u *uring) cancelChain(c *ringChain) {
	u.mu.Lock()
	u.cancels = append(u.cancels, c)
	u.mu.Unlock()
	u.poke()
}

// prepSpliceOp fills op as a SPLICE of up to n bytes from fdIn at offIn
// (-1: a pipe or socket) to fdOut.
func (op *ringOp) prepSplice(fdIn int, offIn int64, fdOut int, n int) {
	op.opcode, op.fdIn, op.offIn, op.fd, op.nbytes = ring.IORING_OP_SPLICE, int32(fdIn), offIn, int32(fdOut), uint32(n)
}

// prepPoll fills op as a one-shot POLL_ADD of fd for events.
func (op *ringOp) prepPoll(fd int, events uint32) {
	op.opcode, op.fd, op.events = ring.IORING_OP_POLL_ADD, int32(fd), events
}

// spliceIn reads up to n bytes of the file fdIn at off into the pipe fdOut
// through the ring. It returns the CQE's result (bytes, or -errno). When
// ctx is done first it cancels the op, still waits for its completion (the
// pipe and fd must outlive it), and returns ctx's error with the result.
func (u *uring) spliceIn(ctx context.Context, c *ringChain, fdIn int, off int64, fdOut int, n int) (int32, error) {
	c.reset(1)
	c.ops[0].prepSplice(fdIn, off, fdOut, n)
	if err := u.submitChain(c); err != nil {
		return 0, err
	}
	select {
	case <-c.done:
		return c.ops[0].res, nil
	case <-ctx.Done():
	}
	u.cancelChain(c)
	<-c.done
	return c.ops[0].res, context.Cause(ctx)
}
