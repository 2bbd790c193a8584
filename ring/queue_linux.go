//go:build linux

package ring

import (
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Memory ordering: the kernel writes the SQ head and the CQ tail, we write
// the SQ tail and the CQ head. Every load of a kernel-written index and
// every store of an index we publish is a sync/atomic operation (Go's
// atomics are sequentially consistent, which covers the acquire/release
// pairs liburing uses and the full barrier it needs between publishing the
// SQ tail and reading IORING_SQ_NEED_WAKEUP).

// GetSQE returns the next free SQE, zeroed, or nil when the SQ is full
// (Submit, then try again). The SQE belongs to the caller until the next
// Submit or SubmitAndWait publishes it; it points into memory shared with
// the kernel and must not be used after that. Prepare it before that
// Submit: Submit publishes every SQE handed out, prepared or not (a zeroed
// SQE is a NOP with user_data 0). Submission side. After Close it returns
// nil.
func (r *Ring) GetSQE() *SQE {
	if r.closed() {
		return nil
	}
	sq := &r.sq
	head := atomic.LoadUint32(sq.head)
	if sq.sqeTail-head >= sq.entries {
		return nil
	}
	sqe := &sq.sqes[sq.sqeTail&sq.mask]
	sq.sqeTail++
	*sqe = SQE{}
	return sqe
}

// SQReady returns the number of SQEs handed out by GetSQE that the kernel
// has not consumed yet (not yet submitted, or with SQPOLL not yet picked up
// by the SQ thread). Submission side. 0 after Close.
func (r *Ring) SQReady() uint32 {
	if r.closed() {
		return 0
	}
	return r.sq.sqeTail - atomic.LoadUint32(r.sq.head)
}

// SQHead returns the kernel's SQ head: how many SQEs it has consumed,
// modulo 2^32 (with SQPOLL, those the SQ thread picked up). Either side.
// 0 after Close.
func (r *Ring) SQHead() uint32 {
	if r.closed() {
		return 0
	}
	return atomic.LoadUint32(r.sq.head)
}

// SQSpaceLeft returns how many more SQEs GetSQE can hand out before the SQ
// is full. Submission side. 0 after Close.
func (r *Ring) SQSpaceLeft() uint32 {
	return r.sq.entries - r.SQReady()
}

// flushSQ publishes the SQEs handed out since the last flush by storing the
// SQ tail. It returns how many it published, and how many SQEs the kernel
// has yet to consume (those, and with SQPOLL any published before that
// the SQ thread has not picked up yet).
func (r *Ring) flushSQ() (published, pending uint32) {
	sq := &r.sq
	if sq.sqeHead != sq.sqeTail {
		published = sq.sqeTail - sq.sqeHead
		sq.sqeHead = sq.sqeTail
		atomic.StoreUint32(sq.tail, sq.sqeTail)
	}
	return published, sq.sqeTail - atomic.LoadUint32(sq.head)
}

// Submit publishes the prepared SQEs and submits them with
// io_uring_enter(toSubmit, 0, flags). It returns the number of SQEs the
// kernel consumed (with IORING_SETUP_SQPOLL: the number this call
// published, which the SQ thread consumes in its own time, so that each
// SQE is counted by one call; it enters only to wake a sleeping SQ
// thread). A request that fails is still consumed
// and reports its error in its CQE; the count is short only when the kernel
// stopped early (an SQE it could not even prepare, without
// IORING_SETUP_SUBMIT_ALL). Submission side.
//
// Errors (wrapping a syscall.Errno) are those of Enter: EAGAIN (no memory
// for requests right now: reap and retry), EBUSY (the CQ overflow list is
// full, or IORING_FEAT_NODROP is missing and the CQ is full: reap CQEs,
// then retry), EEXIST (IORING_SETUP_SINGLE_ISSUER ring entered from another
// thread), EBADR (CQEs were dropped); after Close, one matching
// os.ErrClosed.
func (r *Ring) Submit() (int, error) {
	return r.submit(0)
}

// SubmitAndWait is Submit, then waits until at least waitNr CQEs are ready
// (io_uring_enter(toSubmit, waitNr, IORING_ENTER_GETEVENTS)). The wait
// ends early on a signal (EINTR is retried only when nothing was submitted),
// so callers must not assume waitNr CQEs are ready: check CQReady. With
// IORING_SETUP_DEFER_TASKRUN this is what posts completions. Submission
// side; it also flushes CQ overflow. Errors are those of Submit.
//
// There is no timeout: as io_uring_enter(2) does, it waits until waitNr
// CQEs are ready however few requests are in flight, so a waitNr larger
// than the requests in flight (those submitted now and before, whose
// CQEs have not been reaped) waits until others are submitted, from
// another goroutine, and complete: with nothing else submitting, forever.
// Reaped CQEs do not count: waitNr counts those in the CQ ring, unreaped,
// when it returns. A TIMEOUT submitted with the requests (PrepTimeout)
// bounds the wait: when it fires the wait ends, with fewer than waitNr
// CQEs ready (its own -ETIME among them).
func (r *Ring) SubmitAndWait(waitNr uint32) (int, error) {
	return r.submit(waitNr)
}

func (r *Ring) submit(waitNr uint32) (int, error) {
	if r.closed() {
		return 0, errClosed("io_uring_enter")
	}
	published, toSubmit := r.flushSQ()
	sqPoll := r.params.Flags&IORING_SETUP_SQPOLL != 0
	var flags uint32
	enter := waitNr > 0
	if sqPoll {
		// The store of the tail above is sequentially consistent with this
		// load: the SQ thread either sees the new tail or has set
		// NEED_WAKEUP before sleeping.
		if atomic.LoadUint32(r.sq.flags)&IORING_SQ_NEED_WAKEUP != 0 {
			flags |= IORING_ENTER_SQ_WAKEUP
			enter = true
		}
	} else if toSubmit > 0 {
		enter = true
	}
	if waitNr > 0 || r.cqNeedsFlush() || r.params.Flags&IORING_SETUP_IOPOLL != 0 {
		flags |= IORING_ENTER_GETEVENTS
		enter = true
	}
	n := 0 // without SQPOLL, toSubmit is 0 where there is no enter
	if enter {
		var err error
		if n, err = r.Enter(toSubmit, waitNr, flags); err != nil {
			return n, err
		}
	}
	if sqPoll {
		return int(published), nil
	}
	return n, nil
}

// Enter is io_uring_enter(2) without a signal mask: submit up to toSubmit
// published SQEs and, with IORING_ENTER_GETEVENTS, wait until minComplete
// CQEs are ready. It returns the number of SQEs consumed. EINTR is retried;
// other errors wrap the syscall.Errno: EAGAIN, EBUSY (CQ overflowing: reap,
// then retry), EEXIST (SINGLE_ISSUER from another thread), EBADF/EBADFD,
// EINVAL, EOPNOTSUPP (not a ring fd); after Close, one matching
// os.ErrClosed, without a system call. Either side; it blocks the calling
// OS thread while it waits (the Go scheduler runs other goroutines
// meanwhile), with no timeout: see SubmitAndWait.
func (r *Ring) Enter(toSubmit, minComplete, flags uint32) (int, error) {
	if r.closed() {
		return 0, errClosed("io_uring_enter")
	}
	for {
		n, errno := ioUringEnter(r.fd, toSubmit, minComplete, flags, nil, 0)
		if errno == 0 {
			return n, nil
		}
		if errno != unix.EINTR {
			return 0, fmt.Errorf("io_uring_enter: %w", errno)
		}
	}
}

// cqNeedsFlush reports whether CQEs are held back in the kernel: in the
// overflow list (IORING_SQ_CQ_OVERFLOW) or as task work to run
// (IORING_SQ_TASKRUN, with IORING_SETUP_TASKRUN_FLAG).
func (r *Ring) cqNeedsFlush() bool {
	if r.closed() {
		return false
	}
	return atomic.LoadUint32(r.sq.flags)&(IORING_SQ_CQ_OVERFLOW|IORING_SQ_TASKRUN) != 0
}

// CQReady returns the number of CQEs ready to be read. Completion side.
// 0 after Close.
func (r *Ring) CQReady() uint32 {
	if r.closed() {
		return 0
	}
	return atomic.LoadUint32(r.cq.tail) - atomic.LoadUint32(r.cq.head)
}

// PeekBatchCQE copies up to len(cqes) ready CQEs, oldest first, and returns
// how many it copied. It does not advance the CQ: call CQAdvance with the
// number handled. When no CQE is ready but the kernel holds some back
// (overflow, or pending task work with IORING_SETUP_TASKRUN_FLAG) it enters
// the kernel once to flush them. It never blocks. With
// IORING_SETUP_DEFER_TASKRUN but without IORING_SETUP_TASKRUN_FLAG it cannot
// tell that completions are pending: they are posted only by SubmitAndWait,
// WaitCQE or FlushOverflow on the issuer thread. Completion side. 0 after
// Close.
func (r *Ring) PeekBatchCQE(cqes []CQE) int {
	n := r.peek(cqes)
	if n == 0 && len(cqes) > 0 && r.cqNeedsFlush() {
		// Errors here (EBUSY, EAGAIN) leave the CQEs where they are; a
		// later call or FlushOverflow tries again.
		_ = r.FlushOverflow()
		n = r.peek(cqes)
	}
	return n
}

func (r *Ring) peek(cqes []CQE) int {
	if r.closed() {
		return 0
	}
	cq := &r.cq
	tail := atomic.LoadUint32(cq.tail)
	head := atomic.LoadUint32(cq.head)
	n := min(tail-head, uint32(len(cqes)))
	for i := uint32(0); i < n; i++ {
		cqes[i] = cq.cqes[(head+i)&cq.mask]
	}
	return int(n)
}

// CQAdvance marks the n oldest ready CQEs as seen, handing their slots
// back to the kernel. n must not exceed CQReady. Completion side. It does
// nothing after Close.
func (r *Ring) CQAdvance(n uint32) {
	if n > 0 && !r.closed() {
		atomic.StoreUint32(r.cq.head, atomic.LoadUint32(r.cq.head)+n)
	}
}

// WaitCQE blocks until a CQE is ready, then returns a copy of it and
// advances past it. It submits nothing (SQEs not yet submitted stay
// unsubmitted). Errors are those of Enter (EINTR is retried; after Close,
// one matching os.ErrClosed). Like SubmitAndWait it has no timeout: with
// no request in flight and no CQE ready it waits until one is submitted
// from another goroutine and completes. Completion side; with
// IORING_SETUP_DEFER_TASKRUN it must run on the submitter's locked OS
// thread.
func (r *Ring) WaitCQE() (CQE, error) {
	var one [1]CQE
	for {
		if r.peek(one[:]) == 1 {
			r.CQAdvance(1)
			return one[0], nil
		}
		if _, err := r.Enter(0, 1, IORING_ENTER_GETEVENTS); err != nil {
			return CQE{}, err
		}
	}
}

// CQOverflowPending reports whether IORING_SQ_CQ_OVERFLOW is set: the CQ
// was full and the kernel keeps further CQEs in its overflow list
// (IORING_FEAT_NODROP, 5.5). Reap, then FlushOverflow (PeekBatchCQE and
// WaitCQE also flush when the CQ is empty). Completion side. false after
// Close.
func (r *Ring) CQOverflowPending() bool {
	if r.closed() {
		return false
	}
	return atomic.LoadUint32(r.sq.flags)&IORING_SQ_CQ_OVERFLOW != 0
}

// FlushOverflow enters the kernel with io_uring_enter(0, 0,
// IORING_ENTER_GETEVENTS), which moves overflowed CQEs into the CQ as far as
// it has room and runs pending completion task work. Errors are those of
// Enter. Completion side.
func (r *Ring) FlushOverflow() error {
	_, err := r.Enter(0, 0, IORING_ENTER_GETEVENTS)
	return err
}

// SQFlags returns the SQ ring flags the kernel sets: IORING_SQ_NEED_WAKEUP,
// IORING_SQ_CQ_OVERFLOW, IORING_SQ_TASKRUN. Either side. 0 after Close.
func (r *Ring) SQFlags() uint32 {
	if r.closed() {
		return 0
	}
	return atomic.LoadUint32(r.sq.flags)
}

// CQOverflowCount returns the kernel's count of CQEs dropped because the CQ
// was full (the word at CQRingOffsets.Overflow). It stays 0 with
// IORING_FEAT_NODROP unless the kernel could not allocate overflow entries.
// 0 after Close.
func (r *Ring) CQOverflowCount() uint32 {
	if r.closed() {
		return 0
	}
	return atomic.LoadUint32(r.cq.overflow)
}

// SQDropped returns the kernel's count of invalid SQEs it skipped (an index
// in the SQ array beyond the ring). 0 after Close.
func (r *Ring) SQDropped() uint32 {
	if r.closed() {
		return 0
	}
	return atomic.LoadUint32(r.sq.dropped)
}

// SetCQEventfdDisabled sets or clears IORING_CQ_EVENTFD_DISABLED (5.8): while
// set, a registered eventfd is not signalled. Completion side. It does
// nothing after Close, or where the kernel has no CQ ring flags (before
// 5.8).
func (r *Ring) SetCQEventfdDisabled(disabled bool) {
	if r.cq.flags == nil {
		return
	}
	for {
		old := atomic.LoadUint32(r.cq.flags)
		v := old &^ IORING_CQ_EVENTFD_DISABLED
		if disabled {
			v |= IORING_CQ_EVENTFD_DISABLED
		}
		if atomic.CompareAndSwapUint32(r.cq.flags, old, v) {
			return
		}
	}
}
