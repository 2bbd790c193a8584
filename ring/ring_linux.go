//go:build linux

package ring

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Test seams (see export_test.go).
var (
	setupSyscall = ioUringSetup
	mmapFunc     = unix.Mmap
	registerFunc = ioUringRegister
)

// Ring is one io_uring instance: its fd, the mapped SQ and CQ rings and the
// SQE array.
//
// A Ring is not safe for concurrent use. One goroutine at a time may use the
// submission side (GetSQE, SQReady, SQSpaceLeft, Submit, SubmitAndWait) and
// one goroutine at a time the completion side (CQReady, PeekBatchCQE,
// CQAdvance, WaitCQE, CQOverflowPending, FlushOverflow); the two sides may
// be used by two different goroutines at once. Enter, Probe and the Register
// methods may be called from either side. Close must not run concurrently
// with anything else.
//
// After Close, and on a Ring not made by Setup (the zero value), every
// method is harmless: those that return an error return one for which
// errors.Is(err, os.ErrClosed) holds (as an *os.File's methods do after
// Close; it wraps unix.EBADF too), GetSQE returns nil (as when the SQ is
// full), the counts (SQReady, SQSpaceLeft, CQReady, PeekBatchCQE,
// SQFlags, CQOverflowCount, SQDropped) are 0, CQOverflowPending is false,
// CQAdvance and SetCQEventfdDisabled do nothing, and Fd returns -1.
type Ring struct {
	fd     int
	params Params

	// The mappings, kept so Close can unmap them. cqMem is nil when the CQ
	// ring shares sqMem (IORING_FEAT_SINGLE_MMAP).
	sqMem, cqMem, sqeMem []byte

	sq submissionQueue
	cq completionQueue
}

// submissionQueue is the SQ side. head, flags and dropped are written by the
// kernel; tail by us.
type submissionQueue struct {
	head, tail, flags, dropped *uint32
	mask, entries              uint32
	sqes                       []SQE

	// sqeHead..sqeTail are the SQEs handed out by GetSQE and not yet
	// published to the kernel by moving *tail.
	sqeHead, sqeTail uint32
}

// completionQueue is the CQ side. tail and overflow are written by the
// kernel; head and flags by us.
type completionQueue struct {
	head, tail, overflow, flags *uint32
	mask, entries               uint32
	cqes                        []CQE
}

// supportedSetupFlags are the IORING_SETUP_* flags Setup passes to the
// kernel. Any other bit is refused before the system call: SQE128, CQE32,
// NO_MMAP and REGISTERED_FD_ONLY change the ring's layout or mapping in
// ways this package does not handle, and so may flags of later kernels
// (6.18's IORING_SETUP_CQE_MIXED puts 32-byte CQEs in the CQ ring).
const supportedSetupFlags = IORING_SETUP_IOPOLL | IORING_SETUP_SQPOLL | IORING_SETUP_SQ_AFF |
	IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_ATTACH_WQ | IORING_SETUP_R_DISABLED |
	IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
	IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_NO_SQARRAY

// Setup creates a ring with io_uring_setup(2) and maps it.
//
// entries is the SQ size, rounded up by the kernel to a power of two; the CQ
// is twice that unless p.Flags has IORING_SETUP_CQSIZE. p may be nil; when
// it is not, p.Flags (IORING_SETUP_*) and the other input fields are passed
// to the kernel and, on success, p holds what the kernel filled in
// (SQEntries, CQEntries, Features, the offsets).
//
// Errors wrap a syscall.Errno: ENOSYS (kernel without io_uring, or seccomp),
// EPERM (kernel.io_uring_disabled, or seccomp), EINVAL (entries 0 or above
// 32768 without IORING_SETUP_CLAMP, or flags this kernel does not know),
// ENOMEM/EMFILE (limits). Flags this package does not support (SQE128,
// CQE32, NO_MMAP, REGISTERED_FD_ONLY, and any bit it has no constant for,
// such as 6.18's CQE_MIXED) give EINVAL without a system call. On failure
// nothing stays open or mapped. Linux 5.1.
func Setup(entries uint32, p *Params) (*Ring, error) {
	var params Params
	if p != nil {
		params = *p
	}
	if params.Flags&^supportedSetupFlags != 0 {
		return nil, fmt.Errorf("io_uring_setup: flags %#x not supported by package ring: %w", params.Flags&^supportedSetupFlags, unix.EINVAL)
	}
	fd, errno := setupSyscall(entries, &params)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &Ring{fd: fd, params: params}
	if err := r.mapRings(); err != nil {
		r.unmap()
		unix.Close(fd)
		return nil, err
	}
	if p != nil {
		*p = params
	}
	return r, nil
}

// mapRings maps the rings as the kernel's offsets describe them and sets up
// the queue pointers. On error the caller unmaps what was mapped.
func (r *Ring) mapRings() error {
	cqMem, err := r.mmapRings()
	if err != nil {
		return err
	}
	r.sq.init(r.sqMem, r.sqeMem, &r.params)
	r.cq.init(cqMem, &r.params)
	return nil
}

// ringSizes returns the byte sizes of the SQ and CQ ring mappings, and
// whether one mapping holds both (IORING_FEAT_SINGLE_MMAP, 5.4): then
// sqSize covers the CQ ring too.
func ringSizes(p *Params) (sqSize, cqSize uint64, single bool) {
	sqSize = uint64(p.SQOff.Array) + uint64(p.SQEntries)*4
	if p.Flags&IORING_SETUP_NO_SQARRAY != 0 {
		sqSize = uint64(max(p.SQOff.Head, p.SQOff.Tail, p.SQOff.RingMask, p.SQOff.RingEntries, p.SQOff.Flags, p.SQOff.Dropped)) + 4
	}
	cqSize = uint64(p.CQOff.Cqes) + uint64(p.CQEntries)*uint64(unsafe.Sizeof(CQE{}))
	single = p.Features&IORING_FEAT_SINGLE_MMAP != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	return sqSize, cqSize, single
}

// mmapRings maps the SQ ring, the CQ ring (unless it shares the SQ ring's
// mapping) and the SQE array into r, and returns the mapping that holds
// the CQ ring. Each mapping is kept in r as soon as it is made, so that
// unmap finds it after a later one fails.
func (r *Ring) mmapRings() (cqMem []byte, err error) {
	p := &r.params
	sqSize, cqSize, single := ringSizes(p)
	const prot = unix.PROT_READ | unix.PROT_WRITE
	const flags = unix.MAP_SHARED | unix.MAP_POPULATE
	if r.sqMem, err = mmapFunc(r.fd, IORING_OFF_SQ_RING, int(sqSize), prot, flags); err != nil {
		return nil, fmt.Errorf("io_uring mmap SQ ring: %w", err)
	}
	cqMem = r.sqMem
	if !single {
		if r.cqMem, err = mmapFunc(r.fd, IORING_OFF_CQ_RING, int(cqSize), prot, flags); err != nil {
			return nil, fmt.Errorf("io_uring mmap CQ ring: %w", err)
		}
		cqMem = r.cqMem
	}
	sqesSize := int(p.SQEntries) * int(unsafe.Sizeof(SQE{}))
	if r.sqeMem, err = mmapFunc(r.fd, IORING_OFF_SQES, sqesSize, prot, flags); err != nil {
		return nil, fmt.Errorf("io_uring mmap SQEs: %w", err)
	}
	return cqMem, nil
}

// init points the SQ at its ring in sqMem and its SQEs in sqeMem, as p's
// offsets say. Without IORING_SETUP_NO_SQARRAY it maps SQ slot i to SQE i
// once: SQEs are then handed out in ring order and the array never
// changes. It starts from the kernel's tail (0 on a new ring).
func (sq *submissionQueue) init(sqMem, sqeMem []byte, p *Params) {
	sq.head = u32At(sqMem, p.SQOff.Head)
	sq.tail = u32At(sqMem, p.SQOff.Tail)
	sq.flags = u32At(sqMem, p.SQOff.Flags)
	sq.dropped = u32At(sqMem, p.SQOff.Dropped)
	sq.mask = *u32At(sqMem, p.SQOff.RingMask)
	sq.entries = *u32At(sqMem, p.SQOff.RingEntries)
	sq.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&sqeMem[0])), p.SQEntries)
	if p.Flags&IORING_SETUP_NO_SQARRAY == 0 {
		array := unsafe.Slice(u32At(sqMem, p.SQOff.Array), p.SQEntries)
		for i := range array {
			array[i] = uint32(i)
		}
	}
	sq.sqeHead = *sq.tail
	sq.sqeTail = *sq.tail
}

// init points the CQ at its ring in cqMem, as p's offsets say. The CQ
// ring flags word exists only where the kernel gives its offset (5.8).
func (cq *completionQueue) init(cqMem []byte, p *Params) {
	cq.head = u32At(cqMem, p.CQOff.Head)
	cq.tail = u32At(cqMem, p.CQOff.Tail)
	cq.overflow = u32At(cqMem, p.CQOff.Overflow)
	if p.CQOff.Flags != 0 {
		cq.flags = u32At(cqMem, p.CQOff.Flags)
	}
	cq.mask = *u32At(cqMem, p.CQOff.RingMask)
	cq.entries = *u32At(cqMem, p.CQOff.RingEntries)
	cq.cqes = unsafe.Slice((*CQE)(unsafe.Pointer(&cqMem[p.CQOff.Cqes])), p.CQEntries)
}

// u32At points at the 32-bit word at byte offset off of a mapping.
func u32At(b []byte, off uint32) *uint32 {
	_ = b[off+3]
	return (*uint32)(unsafe.Pointer(&b[off]))
}

// unmap unmaps whatever is mapped and forgets the queue pointers.
func (r *Ring) unmap() error {
	var first error
	for _, m := range []*[]byte{&r.sqeMem, &r.cqMem, &r.sqMem} {
		if *m != nil {
			if err := unix.Munmap(*m); err != nil && first == nil {
				first = fmt.Errorf("io_uring munmap: %w", err)
			}
			*m = nil
		}
	}
	r.sq = submissionQueue{}
	r.cq = completionQueue{}
	return first
}

// closed reports whether r is closed, or was not made by Setup: its
// rings are not mapped. It is the one check every method makes before
// touching the rings or the fd (a load and a compare).
func (r *Ring) closed() bool { return r.sq.head == nil }

// errClosed is the error of a method called after Close (or on a Ring not
// made by Setup) that would have made the system call: it matches
// os.ErrClosed and, as the kernel would answer for a closed fd, EBADF.
func errClosed(call string) error {
	return fmt.Errorf("%s: %w (%w)", call, os.ErrClosed, unix.EBADF)
}

// Close unmaps the rings and closes the ring fd. Requests still in flight
// are cancelled by the kernel when the last reference to the ring goes
// (their CQEs are lost). Close is safe to call more than once; later calls
// return nil, as does Close of a Ring not made by Setup (which closes
// nothing).
func (r *Ring) Close() error {
	if r.closed() {
		return nil
	}
	err := r.unmap()
	if cerr := unix.Close(r.fd); cerr != nil && err == nil {
		err = fmt.Errorf("io_uring close: %w", cerr)
	}
	r.fd = -1
	return err
}

// Fd returns the ring's file descriptor (-1 after Close).
func (r *Ring) Fd() int {
	if r.closed() {
		return -1
	}
	return r.fd
}

// Params returns a copy of the parameters the kernel filled in at Setup:
// SQEntries, CQEntries, Flags, Features (IORING_FEAT_*), the ring offsets.
func (r *Ring) Params() Params { return r.params }

// Features returns the IORING_FEAT_* bits the kernel reported at Setup.
func (r *Ring) Features() uint32 { return r.params.Features }
