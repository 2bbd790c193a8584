package pipes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/ring"
	"github.com/pipes-go/pipes/splice"
)

// uring is an engine's io_uring: one goroutine, locked to its OS thread,
// owns the ring and does every submission and every reap. Copies hand it
// operations through pending; it batches all that are pending into one
// io_uring_enter. Completions are signalled by an eventfd registered with
// the ring and read through the Go netpoller, so no thread is parked per
// copy and none spins.
//
// Only the reads of regular files go through the ring (SPLICE file ->
// pipe), and only those that miss the page cache: they are the splices
// that block in the kernel, and the ring runs them on a capped set of
// io-wq workers instead of one OS thread per copy. A read that hits the
// cache is a splice(2) in the copy's goroutine, cheaper than the hand-off
// to a worker. Sockets and pipes never block an io-wq
// worker: their side of the copy runs as splice(2) on the netpoller.
type uring struct {
	r      *ring.Ring
	st     *counters
	efd    *os.File // eventfd, O_NONBLOCK: read through the netpoller
	sqPoll bool

	mu      sync.Mutex
	pending []*ringOp // to submit
	cancels []*ringOp // to cancel
	closing bool
	broken  error // set by the loop if io_uring_enter fails for good
	nextID  uint64

	wake   chan struct{} // cap 1: pending, cancels or closing changed
	cqWake chan struct{} // cap 1: the eventfd fired
	loopWG sync.WaitGroup
}

// ringOp is one SPLICE from a regular file into an engine pipe.
type ringOp struct {
	id     uint64
	fdIn   int32
	offIn  int64
	fdOut  int32
	nbytes uint32
	res    chan int32 // cap 1: the CQE's res
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

	inFlight := make(map[uint64]*ringOp)
	cqes := make([]ring.CQE, 256)
	for {
		select {
		case <-u.wake:
		case <-u.cqWake:
		}
		// Let the goroutines that are runnable now (copies woken by the
		// last reap, new CopyAsync calls) queue their ops first, so that
		// one io_uring_enter carries them all.
		runtime.Gosched()
		u.reap(inFlight, cqes)

		u.mu.Lock()
		pending, cancels, closing, broken := u.pending, u.cancels, u.closing, u.broken
		u.pending, u.cancels = nil, nil
		u.mu.Unlock()
		if broken != nil {
			for _, op := range pending {
				op.res <- -int32(unix.EIO)
			}
			pending = nil
		}

		for _, op := range pending {
			sqe := u.getSQE(inFlight, cqes)
			sqe.PrepSplice(op.fdIn, op.offIn, op.fdOut, -1, op.nbytes, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			sqe.UserData = op.id
			inFlight[op.id] = op
		}
		for _, op := range cancels {
			if inFlight[op.id] != op {
				continue // completed already
			}
			sqe := u.getSQE(inFlight, cqes)
			sqe.PrepCancel64(op.id, 0)
			sqe.UserData = cancelTag | op.id
		}
		u.submit(inFlight, cqes)
		if closing && len(inFlight) == 0 {
			return
		}
	}
}

// getSQE returns a free SQE, submitting what is queued when the SQ is full.
func (u *uring) getSQE(inFlight map[uint64]*ringOp, cqes []ring.CQE) *ring.SQE {
	for {
		if sqe := u.r.GetSQE(); sqe != nil {
			return sqe
		}
		u.submit(inFlight, cqes)
	}
}

// submit hands every queued SQE to the kernel. EBUSY (the CQ is full and
// the kernel holds overflowed CQEs) and EAGAIN are answered by reaping
// and trying again.
func (u *uring) submit(inFlight map[uint64]*ringOp, cqes []ring.CQE) {
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
			u.reap(inFlight, cqes)
			runtime.Gosched()
		default:
			// The ring is unusable (io_uring_enter failed with an
			// error it is not documented to return in use): fail
			// every op, and every later one, rather than leave a
			// copy waiting for a completion that will not come.
			u.fail(inFlight, err)
			return
		}
	}
}

// fail completes every op in flight with err's errno and makes later
// submissions fail the same way.
func (u *uring) fail(inFlight map[uint64]*ringOp, err error) {
	errno := unix.EIO
	errors.As(err, &errno)
	u.mu.Lock()
	u.broken = err
	u.mu.Unlock()
	for id, op := range inFlight {
		op.res <- -int32(errno)
		delete(inFlight, id)
	}
}

// reap drains the CQ, handing each result to the copy waiting for it.
func (u *uring) reap(inFlight map[uint64]*ringOp, cqes []ring.CQE) {
	for {
		n := u.r.PeekBatchCQE(cqes)
		if n == 0 {
			if u.r.CQOverflowPending() {
				if err := u.r.FlushOverflow(); err == nil {
					continue
				}
			}
			return
		}
		for _, c := range cqes[:n] {
			if c.UserData&cancelTag != 0 {
				continue
			}
			if op := inFlight[c.UserData]; op != nil {
				delete(inFlight, c.UserData)
				op.res <- c.Res
			}
		}
		u.r.CQAdvance(uint32(n))
		u.st.cqes.Add(uint64(n))
	}
}

// spliceIn reads up to n bytes of the file fdIn at off into the pipe fdOut
// through the ring. It returns the CQE's result (bytes, or -errno). When
// ctx is done first it cancels the op, still waits for its completion (the
// pipe and fd must outlive it), and returns ctx's error with the result.
func (u *uring) spliceIn(ctx context.Context, fdIn int, off int64, fdOut int, n int) (int32, error) {
	op := &ringOp{fdIn: int32(fdIn), offIn: off, fdOut: int32(fdOut), nbytes: uint32(n), res: make(chan int32, 1)}
	u.mu.Lock()
	if u.closing {
		u.mu.Unlock()
		return 0, ErrClosed
	}
	if u.broken != nil {
		err := u.broken
		u.mu.Unlock()
		return 0, err
	}
	u.nextID++
	op.id = u.nextID
	u.pending = append(u.pending, op)
	u.mu.Unlock()
	u.poke()

	select {
	case res := <-op.res:
		return res, nil
	case <-ctx.Done():
	}
	u.mu.Lock()
	u.cancels = append(u.cancels, op)
	u.mu.Unlock()
	u.poke()
	return <-op.res, context.Cause(ctx)
}

// copy runs one copy whose source is a regular file: the ring reads the
// file into an engine pipe (at most a pipe's worth per SQE, so a read
// never blocks on the pipe), and the pipe is drained into dst with
// splice(2) on the netpoller (splice.Drain). The file is pinned by a duplicate
// descriptor for the whole copy: io-wq resolves fd numbers when the work
// runs, and the caller's number may be closed and reused by then. The
// file offset is read at the start and, at the end, left after the last
// byte delivered to dst: bytes read into the pipe but not delivered (the
// copy failed or was cancelled) are read again by the next copy.
func (u *uring) copy(ctx context.Context, dst io.Writer, de, src endpoint, limit int64, pool *splice.Pool) (written int64, handled bool, err error) {
	fd, off, err := pinFile(src.conn)
	if err != nil {
		return 0, true, err
	}
	defer unix.Close(fd)
	p, err := pool.Get(ctx)
	if err != nil {
		return 0, true, err
	}
	defer pool.Put(p) // closed, not pooled, if bytes are left in it
	start := off
	if ctx.Done() != nil {
		defer interruptOnDone(ctx, dst, nil)()
	}
	for limit < 0 || written < limit {
		n := p.Size()
		if limit >= 0 && limit-written < int64(n) {
			n = int(limit - written)
		}
		var res int32
		var cerr error
		if pageCached(fd, off, n) {
			// A read from the page cache never blocks: splice(2) here
			// costs less than the hand-off to an io-wq worker.
			res = spliceAt(fd, off, p.WriteFd(), n)
			u.st.cachedReads.Add(1)
		} else {
			res, cerr = u.spliceIn(ctx, fd, off, p.WriteFd(), n)
		}
		if res > 0 {
			off += int64(res)
		}
		if cerr == nil && res < 0 {
			errno := syscall.Errno(-res)
			if off == start && (errno == unix.EINVAL || errno == unix.ENOSYS || errno == unix.EOPNOTSUPP) {
				return 0, false, nil // not spliceable: the caller copies in userspace
			}
			cerr = &os.SyscallError{Syscall: "splice", Err: errno}
		}
		if res > 0 {
			// splice(2) on the netpoller, under Go's reference to the
			// caller's descriptor; interruptOnDone wakes its waits.
			m, derr := splice.Drain(ctx, de.end(), p, int(res))
			written += m
			if derr != nil && written == 0 && errors.Is(derr, unix.EINVAL) {
				// dst refuses splice (an O_APPEND file, some devices):
				// nothing moved; put the offset back and let the
				// caller copy in userspace.
				if _, serr := unix.Seek(fd, start, 0); serr == nil {
					return 0, false, nil
				}
			}
			if derr != nil {
				err = derr
				break
			}
		}
		if cerr != nil {
			err = cerr
			break
		}
		if res == 0 {
			break // EOF
		}
		if cerr := src.conn.Control(func(uintptr) {}); cerr != nil {
			err = cerr // the caller closed the source
			break
		}
	}
	if _, serr := unix.Seek(fd, start+written, 0); serr != nil && err == nil {
		err = &os.SyscallError{Syscall: "lseek", Err: serr}
	}
	return written, true, err
}

// pageCached reports whether the first and last bytes of the n bytes at
// off of the file fd are in the page cache (preadv2 with RWF_NOWAIT, Linux
// 4.14, answers EAGAIN otherwise). Where the file system cannot tell
// (EOPNOTSUPP) it reports false, and the read goes to the ring.
func pageCached(fd int, off int64, n int) bool {
	var b [1]byte
	iov := [][]byte{b[:]}
	for _, o := range [2]int64{off, off + int64(n) - 1} {
		if _, err := unix.Preadv2(fd, iov, o, unix.RWF_NOWAIT); err != nil {
			return false
		}
	}
	return true
}

// spliceAt splices up to n bytes of the file fd at off into the pipe
// wfd, returning the byte count or -errno, as a CQE would.
func spliceAt(fd int, off int64, wfd int, n int) int32 {
	m, err := splice.Splice(fd, &off, wfd, nil, n, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	if err != nil {
		errno := unix.EIO
		errors.As(err, &errno)
		return -int32(errno)
	}
	return int32(m)
}

// pinFile duplicates the file behind c (F_DUPFD_CLOEXEC) and reads its
// offset, both under Go's reference to the caller's descriptor.
func pinFile(c syscall.RawConn) (fd int, off int64, err error) {
	fd = -1
	cerr := c.Control(func(sysfd uintptr) {
		fd, err = unix.FcntlInt(sysfd, unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			err = &os.SyscallError{Syscall: "fcntl", Err: err}
			fd = -1
			return
		}
		off, err = unix.Seek(fd, 0, 1)
		if err != nil {
			err = &os.SyscallError{Syscall: "lseek", Err: err}
			unix.Close(fd)
			fd = -1
		}
	})
	if cerr != nil {
		return -1, 0, cerr
	}
	return fd, off, err
}
