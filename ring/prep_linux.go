//go:build linux

package ring

import "unsafe"

// The Prep methods fill every field of an SQE except Flags (IOSQE_*) and
// UserData, which the caller sets before or after. They match liburing's
// io_uring_prep_* of the same name.

// prepRW sets the fields common to every opcode and clears the others.
func (sqe *SQE) prepRW(op uint8, fd int32, addr uint64, length uint32, off uint64) {
	*sqe = SQE{
		Opcode:   op,
		Flags:    sqe.Flags,
		Fd:       fd,
		Off:      off,
		Addr:     addr,
		Len:      length,
		UserData: sqe.UserData,
	}
}

// PrepNop prepares IORING_OP_NOP: completes with res 0 (5.1).
func (sqe *SQE) PrepNop() {
	sqe.prepRW(IORING_OP_NOP, -1, 0, 0, 0)
}

// PrepSplice prepares IORING_OP_SPLICE (5.7), splice(2) of up to nbytes from
// fdIn at offIn to fdOut at offOut. An offset of -1 means "use and update
// the file position" and is the only valid offset for a pipe. One of the
// two fds must be a pipe. With SPLICE_F_FD_IN_FIXED in spliceFlags fdIn is
// a registered-file index; with IOSQE_FIXED_FILE in Flags, fdOut is.
//
// The CQE's res is the byte count (0 at EOF) or -errno (-EAGAIN on an
// O_NONBLOCK pipe or socket that is not ready: poll first; -EINVAL). The
// kernel always runs SPLICE on an io-wq worker and resolves the fds when
// the worker starts, not at submit: keep them open (or registered) until the
// CQE. A result shorter than nbytes fails an IOSQE_IO_LINK chain.
func (sqe *SQE) PrepSplice(fdIn int32, offIn int64, fdOut int32, offOut int64, nbytes uint32, spliceFlags uint32) {
	sqe.prepRW(IORING_OP_SPLICE, fdOut, uint64(offIn), nbytes, uint64(offOut))
	sqe.SpliceFdIn = fdIn
	sqe.OpFlags = spliceFlags
}

// PrepTee prepares IORING_OP_TEE (5.8), tee(2) of up to nbytes from the pipe
// fdIn to the pipe fdOut without consuming them. SPLICE_F_FD_IN_FIXED and
// IOSQE_FIXED_FILE work as for PrepSplice.
func (sqe *SQE) PrepTee(fdIn, fdOut int32, nbytes uint32, spliceFlags uint32) {
	sqe.prepRW(IORING_OP_TEE, fdOut, 0, nbytes, 0)
	sqe.SpliceFdIn = fdIn
	sqe.OpFlags = spliceFlags
}

// PrepPollAdd prepares a one-shot IORING_OP_POLL_ADD (5.1) for the poll(2)
// events in pollMask (unix.POLLIN, unix.POLLOUT, ...; 32-bit masks since
// 5.9). res is the ready mask, or -ECANCELED when cancelled. The kernel
// takes its reference to the file at submit.
func (sqe *SQE) PrepPollAdd(fd int32, pollMask uint32) {
	sqe.prepRW(IORING_OP_POLL_ADD, fd, 0, 0, 0)
	sqe.OpFlags = poll32(pollMask)
}

// poll32 stores a poll mask as the kernel reads poll32_events: on big-endian
// machines the two 16-bit halves are swapped (liburing's __swahw32).
func poll32(mask uint32) uint32 {
	if isBigEndian {
		return mask<<16 | mask>>16
	}
	return mask
}

var isBigEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 0
}()

// PrepPollRemove prepares IORING_OP_POLL_REMOVE (5.1) of the poll request
// whose UserData is userData: res 0, or -ENOENT if none is pending (-EALREADY
// if it is completing); the poll itself completes with -ECANCELED.
func (sqe *SQE) PrepPollRemove(userData uint64) {
	sqe.prepRW(IORING_OP_POLL_REMOVE, -1, userData, 0, 0)
}

// PrepCancel64 prepares IORING_OP_ASYNC_CANCEL (5.5) of the request whose
// UserData is userData; flags are IORING_ASYNC_CANCEL_* (ALL, 5.19). res is
// 0 (or the count with IORING_ASYNC_CANCEL_ALL), -ENOENT when nothing
// matched, -EALREADY when the request is already running (a SPLICE on an
// io-wq worker): it then completes on its own, often with -EINTR or -512
// (ERESTARTSYS) rather than -ECANCELED.
func (sqe *SQE) PrepCancel64(userData uint64, flags uint32) {
	sqe.prepRW(IORING_OP_ASYNC_CANCEL, -1, userData, 0, 0)
	sqe.OpFlags = flags
}

// PrepCancelFd prepares IORING_OP_ASYNC_CANCEL of requests on fd
// (IORING_ASYNC_CANCEL_FD, added here; 5.19); add IORING_ASYNC_CANCEL_ALL to
// cancel all of them and IORING_ASYNC_CANCEL_FD_FIXED (6.0) when fd is a
// registered-file index. Results as PrepCancel64.
func (sqe *SQE) PrepCancelFd(fd int32, flags uint32) {
	sqe.prepRW(IORING_OP_ASYNC_CANCEL, fd, 0, 0, 0)
	sqe.OpFlags = flags | IORING_ASYNC_CANCEL_FD
}

// PrepLinkTimeout prepares IORING_OP_LINK_TIMEOUT (5.5): placed right after
// an SQE carrying IOSQE_IO_LINK, it cancels that SQE if it has not completed
// within ts. Then the timeout completes with -ETIME and the linked request
// with -ECANCELED; otherwise the timeout completes with -ECANCELED (or
// -ENOENT/-EALREADY). flags are IORING_TIMEOUT_* (ABS, clock selection).
//
// The kernel reads *ts when it consumes the SQE (in Submit; with
// IORING_SETUP_SQPOLL, later, in the SQ thread), so ts must stay reachable
// until then: keep a reference and call runtime.KeepAlive(ts) after Submit
// (after the CQE with SQPOLL). ts is moved to the heap by this call, so its
// address does not change.
func (sqe *SQE) PrepLinkTimeout(ts *KernelTimespec, flags uint32) {
	ts = escape(ts)
	sqe.prepRW(IORING_OP_LINK_TIMEOUT, -1, uint64(uintptr(unsafe.Pointer(ts))), 1, 0)
	sqe.OpFlags = flags
}

// PrepTimeout prepares IORING_OP_TIMEOUT (5.4): completes with -ETIME after
// ts, or with res 0 once count other CQEs have been posted (count 0: time
// only). flags are IORING_TIMEOUT_*. ts has the lifetime rule of
// PrepLinkTimeout.
func (sqe *SQE) PrepTimeout(ts *KernelTimespec, count, flags uint32) {
	ts = escape(ts)
	sqe.prepRW(IORING_OP_TIMEOUT, -1, uint64(uintptr(unsafe.Pointer(ts))), 1, uint64(count))
	sqe.OpFlags = flags
}

// PrepRead prepares IORING_OP_READ (5.6), pread(2) of up to len(buf)
// bytes of fd at off into buf (off -1: at the file position, which the
// read advances). buf must stay reachable, and its length unchanged,
// until the CQE, whose res is the byte count (0 at EOF) or -errno. An
// empty buf (nil or not) reads nothing and completes with res 0, as
// read(2) of 0 bytes does: that 0 is not EOF. A
// buffered read of a regular file on a file system with asynchronous
// buffered reads (ext4, xfs, btrfs; 5.9) that misses the page cache
// does not take an io-wq worker: the kernel starts the disk reads, and
// task work of the submitting thread finishes the op when they are done.
func (sqe *SQE) PrepRead(fd int32, buf []byte, off int64) {
	sqe.prepRW(IORING_OP_READ, fd, uint64(uintptr(unsafe.Pointer(unsafe.SliceData(buf)))), uint32(len(buf)), uint64(off))
}

// PrepFilesUpdate prepares IORING_OP_FILES_UPDATE (5.6): the op form of
// RegisterFilesUpdate, which fills the registered-file slots from offset
// on with the descriptors in fds (-1 empties a slot). It runs at submit,
// under the ring's lock like the other submissions, instead of taking
// that lock in a system call of its own. fds must stay reachable until
// the CQE, whose res is the number of slots updated or -errno.
func (sqe *SQE) PrepFilesUpdate(fds []int32, offset int) {
	sqe.prepRW(IORING_OP_FILES_UPDATE, -1, uint64(uintptr(unsafe.Pointer(unsafe.SliceData(fds)))), uint32(len(fds)), uint64(offset))
}

// PrepFadvise prepares IORING_OP_FADVISE (5.6), posix_fadvise(2) of the
// nbytes at off of fd with advice (unix.FADV_*). POSIX_FADV_WILLNEED runs
// on an io-wq worker and completes once the reads of the range are
// started, not done. res is 0 or -errno.
func (sqe *SQE) PrepFadvise(fd int32, off uint64, nbytes uint32, advice uint32) {
	sqe.prepRW(IORING_OP_FADVISE, fd, 0, nbytes, off)
	sqe.OpFlags = advice
}
