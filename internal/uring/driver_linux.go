package uring

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/ring"
	"github.com/pipes-go/pipes/splice"
)

// Config is what a Driver needs from the engine that owns it.
type Config struct {
	Entries        uint32 // SQ size (IORING_SETUP_CLAMP applies; at least maxChain)
	SQPoll         bool   // IORING_SETUP_SQPOLL
	IOWQMaxWorkers uint32 // io-wq worker cap; 0: the kernel's default
	// Pool lends the copies their intermediate pipes: the engine's pool,
	// shared with its splice(2) copies.
	Pool *splice.Pool
	// Closed is the error submissions fail with once Close has begun
	// (the engine's ErrClosed).
	Closed error
	// Files is the size of the registered-file table that pins the
	// callers' descriptors; 0, or a kernel that refuses the table, pins
	// them with duplicates.
	Files uint32
	// WarmChunk is the most a Warmer has the ring read in at once, and
	// the size of the guard those reads land in (an address range, no
	// memory); 0: no Warmers.
	WarmChunk int
	// CachedSenders bounds how many copies with a Warmer are at once in
	// a system call sending a chunk found in the page cache (the
	// Warmer's Gate); 0: no bound.
	CachedSenders int
}

// Driver is an engine's io_uring: one goroutine, locked to its OS thread,
// owns the ring and does every submission and every reap. Copies hand it
// chains of operations through pending; it batches all that are pending
// into one io_uring_enter. Completions are signalled by an eventfd
// registered with the ring and read through the Go netpoller, so no thread
// is parked per copy and none spins.
//
// Two kinds of copy use the ring, both only from a regular file and only
// for what is not in the page cache: a sendfile(2) or splice(2) copy whose
// Warmer has the ring read each uncached chunk in before the copy reads
// it (warm_linux.go), and CopyReads, whose reads that miss the page cache
// go through the ring into a pipe drained with splice(2) on the netpoller
// (copy_linux.go). The callers' descriptors are named in SQEs through
// pins (files_linux.go). POLL_ADD is there for chains that wait for
// readiness (the driver's tests use it to hold a chain in flight).
type Driver struct {
	r      *ring.Ring
	st     *Counters
	pool   *splice.Pool
	closed error
	efd    *os.File // eventfd, O_NONBLOCK: read through the netpoller
	sqPoll bool
	files  files // the registered-file table

	guard []byte // where Warmers' reads land, mapped with no access; nil: no Warmers
	// senders bounds the Warmer copies in a system call sending a
	// chunk found in the page cache (Warmer.Enter); nil: no bound.
	senders *turns
	// scratch is where the reads of Warmers in shortReadahead land, made
	// on the first: bytes nobody reads.
	scratch     []byte
	scratchOnce sync.Once
	// steps caches markStep's answer per device (st_dev).
	stepMu sync.Mutex
	steps  map[uint64]int
	// afterGuard, if set (by tests), is called after a missing chunk's
	// reads into the guard, before the Warmer checks they read it whole.
	afterGuard func(off, n int64)

	mu      sync.Mutex
	pending []*chain // to submit
	cancels []*chain // to cancel
	closing bool
	broken  error // set by the loop if io_uring_enter fails for good
	nextID  uint64

	wake   chan struct{} // cap 1: pending, cancels or closing changed
	cqWake chan struct{} // cap 1: the eventfd fired
	loopWG sync.WaitGroup

	// entered is when the loop's io_uring_enter now under way began, or
	// with SQPOLL when the SQEs now waiting for the SQ thread began to
	// wait with none picked up (watchSQ), since epoch; 0: none is
	// (Stalled).
	epoch   time.Time
	entered atomic.Int64
	// workers is the io-wq worker cap the driver set (0: none, or the
	// kernel refused it); splicing holds when each SPLICE chain in
	// flight was submitted, since epoch (Stalled).
	workers   int
	spliceMu  sync.Mutex
	splicing  map[*chain]time.Duration
	nSplicing atomic.Int32 // len(splicing), read without the lock
}

// stalledEnter is how long an io_uring_enter of the loop, or a SPLICE
// on an io-wq worker, must have run for the ring to count as stalled
// (enterStalled, Stalled): a submission issues buffered READs inline,
// and the kernel's readahead behind one waits there for a free request
// of its device's queue, which on a disk that stops answering never
// comes; every later op of the ring waits behind that call. A SPLICE
// holds its worker while its read waits for the disk.
const stalledEnter = 100 * time.Millisecond

// enterStalled reports whether the loop has been inside one
// io_uring_enter for stalledEnter or longer: a disk stopped answering
// holds the call, and every op queued after it waits. New reads then
// stay off the ring (NewWarmer's Warmers grant chunks without reading
// them in; CopyReads, see Stalled): copies read on their own threads,
// as io.Copy's do. Ops queued already wait for the call. With SQPOLL
// the kernel's SQ thread issues the ops and waits there instead: the
// ring counts as stalled once SQEs have waited stalledEnter with none
// picked up (watchSQ).
func (d *Driver) enterStalled() bool {
	in := d.entered.Load()
	return in != 0 && time.Since(d.epoch)-time.Duration(in) >= stalledEnter
}

// Stalled reports, for CopyReads, whether its SPLICEs would wait behind
// a disk that stopped answering: enterStalled, or as many SPLICE chains
// as the io-wq worker cap (where the driver set one) have been in
// flight for stalledEnter or longer, each holding a worker. CopyReads
// then takes no new copy and splices its misses on the copy's thread.
// A disk that is only slow trips it too, while its reads fill the
// workers for that long: the copies then read on their own threads.
func (d *Driver) Stalled() bool {
	if d.enterStalled() {
		return true
	}
	if d.workers == 0 || int(d.nSplicing.Load()) < d.workers {
		return false
	}
	now := time.Since(d.epoch)
	d.spliceMu.Lock()
	defer d.spliceMu.Unlock()
	held := 0
	for _, at := range d.splicing {
		if now-at >= stalledEnter {
			if held++; held >= d.workers {
				return true
			}
		}
	}
	return false
}

// splicingFrom notes that the SPLICE chain c is in flight since at
// (since epoch; 0: no more), for Stalled.
func (d *Driver) splicingFrom(c *chain, at time.Duration) {
	d.spliceMu.Lock()
	if at != 0 {
		d.splicing[c] = at
	} else {
		delete(d.splicing, c)
	}
	d.nSplicing.Store(int32(len(d.splicing)))
	d.spliceMu.Unlock()
}

// state is where a chain is in its life. Its copy moves it from idle to
// queued (submit, under Driver.mu); from there only the loop moves it, up
// to done, when it sends the done token; reset, once the copy has taken
// the token, makes it idle again.
//
//	idle -> queued -> inFlight -> done
//	                     |          ^
//	                     v          |
//	               cancelWanted <-> cancelling
type state uint8

const (
	idle         state = iota // being filled in by its copy, or done and taken back
	queued                    // handed to the loop, no SQE yet
	inFlight                  // SQEs submitted, some ops without a CQE
	cancelWanted              // cancel asked: the loop's next pass cancels the first op without a CQE
	cancelling                // an ASYNC_CANCEL for that op is in flight, or has answered and the op's CQE is awaited
	done                      // every op has its CQE, and the done token is sent
)

// op is one SQE of a chain: IORING_OP_SPLICE, IORING_OP_READ,
// IORING_OP_FILES_UPDATE or IORING_OP_POLL_ADD.
type op struct {
	id     uint64
	opcode uint8
	fd     fileRef // SPLICE: fd_out; READ: the file; POLL_ADD: the polled fd
	fdIn   fileRef // SPLICE
	offIn  int64   // SPLICE: offset in fdIn, -1 for a pipe or socket; READ: offset; FILES_UPDATE: the slot
	nbytes uint32
	events uint32   // POLL_ADD: the events
	buf    []byte   // READ: where the bytes land
	update [1]int32 // FILES_UPDATE: the descriptor for slot offIn (-1: empty it)
	chain  *chain
	// asks: the ASYNC_CANCELs sent for this op (the loop's).
	asks uint8

	// Set by the loop; read by the copy once the chain is done.
	res      int32
	complete bool
}

// chain is a sequence of ops submitted together, each linked to the
// next: with IOSQE_IO_HARDLINK an op starts when the one before it has
// completed, whatever its result; with IOSQE_IO_LINK only when it succeeded
// in full (a failure or a short SPLICE completes the rest with
// -ECANCELED). A chain of one op is a plain request. The copy that owns it
// may reuse it once done has fired.
type chain struct {
	ops      []op
	hardlink bool
	done     chan struct{} // cap 1: a token once every op has completed

	// Loop-owned once queued (see state).
	state state
	left  int // ops without a CQE yet
}

// reset readies the chain for n ops, to be filled in by the caller.
func (c *chain) reset(n int) {
	if c.done == nil {
		c.done = make(chan struct{}, 1)
	}
	c.ops = c.ops[:0]
	for range n {
		c.ops = append(c.ops, op{chain: c})
	}
	c.hardlink, c.left, c.state = false, 0, idle
}

// first returns the first op without a CQE, or nil.
func (c *chain) first() *op {
	for i := range c.ops {
		if !c.ops[i].complete {
			return &c.ops[i]
		}
	}
	return nil
}

// finish marks c done and gives it back to its copy.
func (c *chain) finish() {
	c.left, c.state = 0, done
	c.done <- struct{}{}
}

// maxChain is the most ops a chain has (a Warmer's READs: Take bounds
// a chunk so that warm makes at most this many), and the least SQ size:
// a chain must fit in one submission (prepChain).
const maxChain = 5

// cancelTag marks the user_data of ASYNC_CANCEL SQEs.
const cancelTag = 1 << 63

// ErrNoSplice reports a kernel whose ring lacks IORING_OP_SPLICE (or
// IORING_OP_ASYNC_CANCEL).
var ErrNoSplice = errors.New("io_uring lacks IORING_OP_SPLICE (Linux 5.7)")

// New sets up a ring as cfg asks and starts its loop. Its errors wrap the
// errno of what failed (io_uring_setup, the probe, eventfd), or are
// ErrNoSplice.
func New(cfg Config, st *Counters) (*Driver, error) {
	r, err := setupRing(cfg)
	if err != nil {
		return nil, err
	}
	d := &Driver{
		r: r, st: st, pool: cfg.Pool, closed: cfg.Closed, sqPoll: cfg.SQPoll,
		wake: make(chan struct{}, 1), cqWake: make(chan struct{}, 1), epoch: time.Now(),
		splicing: make(map[*chain]time.Duration),
	}
	if err := d.init(cfg); err != nil {
		r.Close()
		return nil, err
	}
	return d, nil
}

// setupRing creates the ring, asking for the flags that cut overhead
// where the kernel has them and retrying without them where it does not.
func setupRing(cfg Config) (*ring.Ring, error) {
	base := uint32(ring.IORING_SETUP_CLAMP)
	if cfg.SQPoll {
		base |= ring.IORING_SETUP_SQPOLL
	}
	tries := []uint32{
		base | ring.IORING_SETUP_SUBMIT_ALL | ring.IORING_SETUP_COOP_TASKRUN, // 5.19
		base,
	}
	var err error
	for _, flags := range tries {
		p := &ring.Params{Flags: flags}
		if cfg.SQPoll {
			p.SQThreadIdle = 50 // ms
		}
		var r *ring.Ring
		r, err = ring.Setup(max(cfg.Entries, maxChain), p)
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, unix.EINVAL) {
			return nil, err
		}
	}
	return nil, err
}

func (d *Driver) init(cfg Config) error {
	probe, err := d.r.Probe()
	if err != nil {
		return err
	}
	if !probe.Supported(ring.IORING_OP_SPLICE) || !probe.Supported(ring.IORING_OP_ASYNC_CANCEL) {
		return ErrNoSplice
	}
	if cfg.IOWQMaxWorkers > 0 {
		// Linux 5.15. Older kernels answer EINVAL: run uncapped.
		_, _, err := d.r.RegisterIOWQMaxWorkers(cfg.IOWQMaxWorkers, cfg.IOWQMaxWorkers)
		if err != nil && !errors.Is(err, unix.EINVAL) {
			return err
		}
		if err == nil {
			d.workers = int(cfg.IOWQMaxWorkers)
		}
	}
	d.files.init(d.r, cfg.Files)
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	if err := d.r.RegisterEventfd(efd); err != nil {
		unix.Close(efd)
		return err
	}
	d.efd = os.NewFile(uintptr(efd), "pipes-ring-eventfd")
	d.initWarm(cfg.WarmChunk)
	if cfg.CachedSenders > 0 {
		d.senders = newTurns(cfg.CachedSenders)
	}
	d.loopWG.Add(2)
	go d.readEventfd()
	go d.loop()
	return nil
}

// Close stops the loop once no operation is in flight (the engine has
// waited for its copies by then), and releases the ring and the eventfd.
func (d *Driver) Close() error {
	d.mu.Lock()
	d.closing = true
	d.mu.Unlock()
	d.poke()
	d.efd.Close() // ends readEventfd
	d.loopWG.Wait()
	d.closeWarm()
	return d.r.Close()
}

func (d *Driver) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// readEventfd turns eventfd counts into wake-ups of the loop. It resets
// the count before it signals, so no completion posted after a reap goes
// unnoticed.
func (d *Driver) readEventfd() {
	defer d.loopWG.Done()
	var b [8]byte
	for {
		if _, err := d.efd.Read(b[:]); err != nil {
			return
		}
		select {
		case d.cqWake <- struct{}{}:
		default:
		}
	}
}

// loop owns the ring. It is locked to one OS thread because the kernel
// keeps one io-wq (and applies the worker cap) per submitting thread.
func (d *Driver) loop() {
	defer d.loopWG.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	l := newLoopState()
	for {
		select {
		case <-d.wake:
		case <-d.cqWake:
		case <-l.sqWatch.C:
		}
		// Let the goroutines that are runnable now (copies woken by the
		// last reap, new copies) queue their chains first, so that one
		// io_uring_enter carries them all.
		runtime.Gosched()
		d.reap(l)
		if d.queue(l) {
			return
		}
		d.watchSQ(l)
	}
}

// watchSQ keeps, with SQPOLL, entered at when the SQEs now waiting for
// the kernel's SQ thread began to wait with none of them picked up (0:
// none waits), for enterStalled: the SQ thread issues the ops itself,
// and where a READ's readahead waits for a request of a device that
// stopped answering, it waits there, and every op after it waits. While
// SQEs wait, the loop looks again every stalledEnter/4 (l.sqWatch).
func (d *Driver) watchSQ(l *loopState) {
	if !d.sqPoll {
		return
	}
	if d.r.SQReady() == 0 {
		l.sqWaiting = false
		d.entered.Store(0)
		return
	}
	if head := d.r.SQHead(); !l.sqWaiting || head != l.sqHead {
		l.sqWaiting, l.sqHead = true, head
		d.entered.Store(int64(max(time.Since(d.epoch), 1)))
	}
	l.sqWatch.Reset(stalledEnter / 4)
}

// loopState is what the loop goroutine alone touches.
type loopState struct {
	inFlight map[uint64]*op
	aborting map[*chain]struct{} // chains in cancelWanted or cancelling
	cqes     []ring.CQE
	broken   error // Driver.broken, which only the loop sets
	// With SQPOLL (watchSQ): whether SQEs wait for the SQ thread, its
	// SQ head when that began or last moved, and the timer that wakes
	// the loop to look again.
	sqWaiting bool
	sqHead    uint32
	sqWatch   *time.Timer
}

func newLoopState() *loopState {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &loopState{
		inFlight: make(map[uint64]*op),
		aborting: make(map[*chain]struct{}),
		cqes:     make([]ring.CQE, 256),
		sqWatch:  t,
	}
}

// queue prepares the SQEs of the chains and cancels copies have handed
// over and submits them. It reports whether the loop is done: the driver
// is closing and nothing is in flight.
func (d *Driver) queue(l *loopState) (finished bool) {
	d.mu.Lock()
	pending, cancels, closing, broken := d.pending, d.cancels, d.closing, d.broken
	d.pending, d.cancels = nil, nil
	d.mu.Unlock()
	if broken != nil {
		for _, c := range pending {
			d.failChain(c, broken)
		}
		pending = nil
	}
	for _, c := range pending {
		d.prepChain(l, c)
	}
	for _, c := range cancels {
		// A chain already done has nothing left to cancel. (pending
		// came first: a chain submitted and cancelled since the last
		// pass is in flight by now.)
		if c.state == inFlight {
			c.state = cancelWanted
			l.aborting[c] = struct{}{}
		}
	}
	d.cancelAborting(l)
	d.submit(l)
	return closing && len(l.inFlight) == 0
}

// prepChain puts the SQEs of the queued chain c in the SQ: queued ->
// inFlight.
func (d *Driver) prepChain(l *loopState, c *chain) {
	// A chain must not straddle two submissions: the kernel ends a
	// link at the end of each one.
	if !d.room(l, uint32(len(c.ops))) {
		d.failChain(c, l.broken)
		return
	}
	for i := range c.ops {
		o := &c.ops[i]
		sqe := d.getSQE(l)
		switch o.opcode {
		case ring.IORING_OP_SPLICE:
			flags := uint32(unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK)
			if o.fdIn.fixed {
				flags |= ring.SPLICE_F_FD_IN_FIXED
			}
			sqe.PrepSplice(o.fdIn.n, o.offIn, o.fd.n, -1, o.nbytes, flags)
		case ring.IORING_OP_POLL_ADD:
			sqe.PrepPollAdd(o.fd.n, o.events)
		case ring.IORING_OP_READ:
			sqe.PrepRead(o.fd.n, o.buf, o.offIn)
		case ring.IORING_OP_FILES_UPDATE:
			sqe.PrepFilesUpdate(o.update[:], int(o.offIn))
		}
		if o.fd.fixed {
			sqe.Flags |= ring.IOSQE_FIXED_FILE
		}
		switch {
		case i == len(c.ops)-1:
		case c.hardlink:
			sqe.Flags |= ring.IOSQE_IO_HARDLINK
		default:
			sqe.Flags |= ring.IOSQE_IO_LINK
		}
		sqe.UserData = o.id
		l.inFlight[o.id] = o
	}
	c.left, c.state = len(c.ops), inFlight
}

// cancelAborting queues an IORING_OP_ASYNC_CANCEL for the first pending op
// of each chain in cancelWanted: -> cancelling. The rest of a chain is
// not armed yet and cannot be cancelled; it completes with -ECANCELED
// once the op before it fails, or gets its own cancel once that op has
// completed with success (which puts the chain back in cancelWanted).
func (d *Driver) cancelAborting(l *loopState) {
	for c := range l.aborting {
		switch c.state {
		case done:
			delete(l.aborting, c)
		case cancelWanted:
			sqe := d.getSQE(l)
			if sqe == nil {
				return // the ring broke: fail failed every chain
			}
			o := c.first()
			o.asks++
			sqe.PrepCancel64(o.id, 0)
			sqe.UserData = cancelTag | o.id
			c.state = cancelling
		}
	}
}

// getSQE returns a free SQE, submitting what is queued when the SQ is
// full; nil once the ring has broken (room).
func (d *Driver) getSQE(l *loopState) *ring.SQE {
	for {
		if sqe := d.r.GetSQE(); sqe != nil {
			return sqe
		}
		if !d.room(l, 1) {
			return nil
		}
	}
}

// room submits what is queued until the SQ has room for n SQEs. With
// SQPOLL the SQ thread frees the room in its own time, after submit has
// returned: the loop then reaps (a kernel that holds completions back
// may wait for room in the CQ before it submits more) and waits for the
// SQ thread in io_uring_enter (IORING_ENTER_SQ_WAIT, Linux 5.10) rather
// than spin on the SQ, and yields where the kernel lacks it.
//
// It reports false where the ring has broken (fail): the SQEs in the SQ
// then stay there for good, and no room comes.
func (d *Driver) room(l *loopState, n uint32) bool {
	for d.r.SQSpaceLeft() < n {
		d.submit(l)
		if l.broken != nil {
			return false
		}
		if !d.sqPoll || d.r.SQSpaceLeft() >= n {
			continue
		}
		d.reap(l)
		d.st.Enters.Add(1)
		_, err := d.r.Enter(0, 0, ring.IORING_ENTER_SQ_WAKEUP|ring.IORING_ENTER_SQ_WAIT)
		if err != nil {
			runtime.Gosched()
		}
	}
	return true
}

// submit hands every queued SQE to the kernel. EBUSY (the CQ is full and
// the kernel holds overflowed CQEs) and EAGAIN are answered by reaping
// and trying again. With SQPOLL it publishes the SQEs queued since the
// last call (counted as one Enter: a hand-off to the SQ thread, which
// enters the kernel only to wake it) and returns.
func (d *Driver) submit(l *loopState) {
	for d.r.SQReady() > 0 {
		if !d.sqPoll { // with SQPOLL, see watchSQ
			d.entered.Store(int64(max(time.Since(d.epoch), 1)))
		}
		n, err := d.r.Submit()
		if !d.sqPoll {
			d.entered.Store(0)
		}
		if n > 0 || !d.sqPoll || err != nil {
			d.st.Enters.Add(1)
		}
		if n > 0 {
			d.st.SQEs.Add(uint64(n))
		}
		switch {
		case err == nil:
			if d.sqPoll || n == 0 {
				// The SQ thread consumes the SQEs in its own time.
				return
			}
		case errors.Is(err, unix.EBUSY), errors.Is(err, unix.EAGAIN):
			d.reap(l)
			runtime.Gosched()
		default:
			// The ring is unusable (io_uring_enter failed with an
			// error it is not documented to return in use): fail
			// every op, and every later one, rather than leave a
			// copy waiting for a completion that will not come.
			d.fail(l, err)
			return
		}
	}
}

// fail completes every op in flight with err's errno and makes later
// submissions fail the same way.
func (d *Driver) fail(l *loopState, err error) {
	l.broken = err
	d.mu.Lock()
	d.broken = err
	d.mu.Unlock()
	for _, o := range l.inFlight {
		d.failChain(o.chain, err)
	}
	clear(l.inFlight)
	clear(l.aborting)
}

// failChain completes the ops of c that have no CQE with err's errno.
func (d *Driver) failChain(c *chain, err error) {
	errno := unix.EIO
	errors.As(err, &errno)
	failed := false
	for i := range c.ops {
		if o := &c.ops[i]; !o.complete {
			o.res, o.complete = -int32(errno), true
			failed = true
		}
	}
	if failed {
		c.finish()
	}
}

// reap drains the CQ. A CQE answers either an ASYNC_CANCEL (reapCancel)
// or an op of a chain (reapOp).
func (d *Driver) reap(l *loopState) {
	retry := false
	for {
		n := d.r.PeekBatchCQE(l.cqes)
		if n == 0 {
			if d.r.CQOverflowPending() {
				if err := d.r.FlushOverflow(); err == nil {
					continue
				}
			}
			break
		}
		// Counted before the copies they complete are woken, so a copy
		// never sees its chain done and its CQEs uncounted.
		d.st.CQEs.Add(uint64(n))
		for _, cqe := range l.cqes[:n] {
			if cqe.UserData&cancelTag != 0 {
				retry = d.reapCancel(l, cqe) || retry
			} else {
				d.reapOp(l, cqe)
			}
		}
		d.r.CQAdvance(uint32(n))
	}
	if retry {
		d.poke()
	}
}

// cancelAsks bounds the ASYNC_CANCELs sent for one op.
const cancelAsks = 3

// reapCancel takes the answer to an ASYNC_CANCEL. -ENOENT: the op was not
// armed yet (its link was being issued), has completed, or is armed
// where no cancel finds it (a buffered READ waiting for its pages, which
// completes on its own); the chain goes back to cancelWanted, and the
// next pass asks again if the op is still pending (retry reports that
// one is needed), up to cancelAsks asks: past them the op is taken for
// one of the last kind, and asking on would busy the loop until the
// disk answers. 0, -EALREADY, or -ENOENT past cancelAsks: the op
// completes soon; the chain stays cancelling until its CQE.
func (d *Driver) reapCancel(l *loopState, cqe ring.CQE) (retry bool) {
	o := l.inFlight[cqe.UserData&^cancelTag]
	if o == nil {
		return false // the op has completed: reapOp moved its chain on
	}
	if cqe.Res == -int32(unix.ENOENT) && o.asks < cancelAsks {
		o.chain.state = cancelWanted
		return true
	}
	o.chain.state = cancelling
	return false
}

// reapOp records the result of an op and wakes the copy that owns its
// chain once all the chain's ops have completed. A chain being cancelled
// goes back to cancelWanted, so that its next op, armed now, is
// cancelled in turn.
func (d *Driver) reapOp(l *loopState, cqe ring.CQE) {
	o := l.inFlight[cqe.UserData]
	if o == nil {
		return
	}
	delete(l.inFlight, cqe.UserData)
	c := o.chain
	o.res, o.complete = cqe.Res, true
	c.left--
	if c.state == cancelling {
		c.state = cancelWanted
	}
	if c.left == 0 {
		delete(l.aborting, c)
		c.finish()
	}
}

// submitChain queues c, filled in by the caller, for the loop: idle -> queued.
// It fails with Config.Closed once the driver is closing, and refuses a
// chain of more than maxChain ops, which might never fit in one
// submission: a caller's bug, reported rather than waited on for ever.
func (d *Driver) submitChain(c *chain) error {
	if len(c.ops) > maxChain {
		return fmt.Errorf("uring: a chain of %d ops, over the %d that fit in one submission", len(c.ops), maxChain)
	}
	d.mu.Lock()
	if d.closing {
		d.mu.Unlock()
		return d.closed
	}
	if d.broken != nil {
		err := d.broken
		d.mu.Unlock()
		return err
	}
	d.queueLocked(c)
	d.mu.Unlock()
	d.poke()
	return nil
}

// queueLocked hands c to the loop: idle -> queued, its ops named by ids
// the loop has not seen. d.mu is held.
func (d *Driver) queueLocked(c *chain) {
	for i := range c.ops {
		d.nextID++
		c.ops[i].id = d.nextID
	}
	c.state = queued
	d.pending = append(d.pending, c)
}

// cancelChain asks the loop to cancel what of c is still pending. The copy
// must still wait for c.done: the ops' fds and pipes must outlive them.
func (d *Driver) cancelChain(c *chain) {
	d.mu.Lock()
	d.cancels = append(d.cancels, c)
	d.mu.Unlock()
	d.poke()
}

// prepSplice fills o as a SPLICE of up to n bytes from in at offIn (-1:
// a pipe or socket) to out.
func (o *op) prepSplice(in fileRef, offIn int64, out fileRef, n int) {
	o.opcode, o.fdIn, o.offIn, o.fd, o.nbytes = ring.IORING_OP_SPLICE, in, offIn, out, uint32(n)
}

// prepRead fills o as a READ of len(buf) bytes at off of f into buf.
func (o *op) prepRead(f fileRef, off int64, buf []byte) {
	o.opcode, o.fd, o.offIn, o.buf = ring.IORING_OP_READ, f, off, buf
}

// prepFilesUpdate fills o as a FILES_UPDATE that puts fd in the
// registered-file slot s (-1 empties it).
func (o *op) prepFilesUpdate(s int32, fd int32) {
	o.opcode, o.fd, o.offIn, o.update[0] = ring.IORING_OP_FILES_UPDATE, plain(-1), int64(s), fd
}

// prepPoll fills o as a one-shot POLL_ADD of f for events.
func (o *op) prepPoll(f fileRef, events uint32) {
	o.opcode, o.fd, o.events = ring.IORING_OP_POLL_ADD, f, events
}

// spliceIn reads up to n bytes of the file fdIn at off into the pipe fdOut
// through the ring. It returns the CQE's result (bytes, or -errno). When
// ctx is done first it cancels the op, still waits for its completion (the
// pipe and fd must outlive it), and returns ctx's error with the result.
func (d *Driver) spliceIn(ctx context.Context, c *chain, in fileRef, off int64, fdOut int, n int) (int32, error) {
	c.reset(1)
	c.ops[0].prepSplice(in, off, plain(fdOut), n)
	if err := d.submitChain(c); err != nil {
		return 0, err
	}
	d.splicingFrom(c, max(time.Since(d.epoch), 1))
	defer d.splicingFrom(c, 0)
	select {
	case <-c.done:
		return c.ops[0].res, nil
	case <-ctx.Done():
	}
	d.cancelChain(c)
	<-c.done
	return c.ops[0].res, context.Cause(ctx)
}
