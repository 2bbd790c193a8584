//go:build linux

package ring

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file is the raw kernel ABI: the structs and constants of
// include/uapi/linux/io_uring.h under their kernel names, and the three
// system calls as thin wrappers returning syscall.Errno. abi_linux_test.go
// checks the layouts (and, where gcc and the uapi header are installed,
// every constant) against the kernel's.

// SQE is struct io_uring_sqe, a 64-byte submission queue entry. The unions
// of the kernel struct are flattened to their most common member:
//
//	Off      off / addr2 / cmd_op
//	Addr     addr / splice_off_in
//	OpFlags  rw_flags / poll32_events / splice_flags / cancel_flags /
//	         timeout_flags / ... (one 32-bit per-opcode flags word)
//	BufIndex buf_index / buf_group
//	SpliceFdIn splice_fd_in / file_index
//
// The Prep methods fill every field except Flags and UserData, which the
// caller sets directly.
type SQE struct {
	Opcode      uint8  // IORING_OP_*
	Flags       uint8  // IOSQE_*
	Ioprio      uint16 // ioprio, or per-opcode flags (recv/send/accept)
	Fd          int32  // file descriptor, or registered-file index with IOSQE_FIXED_FILE
	Off         uint64 // off / addr2
	Addr        uint64 // addr / splice_off_in
	Len         uint32
	OpFlags     uint32 // rw_flags / poll32_events / splice_flags / cancel_flags / timeout_flags
	UserData    uint64 // copied to CQE.UserData
	BufIndex    uint16
	Personality uint16
	SpliceFdIn  int32 // splice_fd_in / file_index
	Addr3       uint64
	_           uint64
}

// CQE is struct io_uring_cqe, a 16-byte completion queue entry (rings set up
// without IORING_SETUP_CQE32). Res is the operation's result: >= 0 on
// success, a negated errno on failure (-ECANCELED, -ETIME, -EAGAIN, ...).
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32 // IORING_CQE_F_*
}

// SQRingOffsets is struct io_sqring_offsets: byte offsets of the SQ ring
// fields inside the mapping at IORING_OFF_SQ_RING.
type SQRingOffsets struct {
	Head        uint32
	Tail        uint32
	RingMask    uint32
	RingEntries uint32
	Flags       uint32
	Dropped     uint32
	Array       uint32 // 0 with IORING_SETUP_NO_SQARRAY
	Resv1       uint32
	UserAddr    uint64 // resv2; user_addr with IORING_SETUP_NO_MMAP (6.5)
}

// CQRingOffsets is struct io_cqring_offsets: byte offsets of the CQ ring
// fields inside the mapping at IORING_OFF_CQ_RING (or the SQ ring mapping
// with IORING_FEAT_SINGLE_MMAP).
type CQRingOffsets struct {
	Head        uint32
	Tail        uint32
	RingMask    uint32
	RingEntries uint32
	Overflow    uint32
	Cqes        uint32
	Flags       uint32
	Resv1       uint32
	UserAddr    uint64 // resv2; user_addr with IORING_SETUP_NO_MMAP (6.5)
}

// Params is struct io_uring_params (120 bytes), passed to io_uring_setup(2)
// and filled in by the kernel on return.
type Params struct {
	SQEntries    uint32
	CQEntries    uint32 // in: CQ size with IORING_SETUP_CQSIZE
	Flags        uint32 // IORING_SETUP_*
	SQThreadCPU  uint32 // with IORING_SETUP_SQ_AFF
	SQThreadIdle uint32 // milliseconds, with IORING_SETUP_SQPOLL
	Features     uint32 // out: IORING_FEAT_*
	WQFd         uint32 // with IORING_SETUP_ATTACH_WQ
	Resv         [3]uint32
	SQOff        SQRingOffsets
	CQOff        CQRingOffsets
}

// KernelTimespec is struct __kernel_timespec, the timeout argument of
// IORING_OP_TIMEOUT and IORING_OP_LINK_TIMEOUT.
type KernelTimespec struct {
	Sec  int64
	Nsec int64
}

// NsecToKernelTimespec converts a duration in nanoseconds to a KernelTimespec.
func NsecToKernelTimespec(nsec int64) KernelTimespec {
	return KernelTimespec{Sec: nsec / 1e9, Nsec: nsec % 1e9}
}

// ProbeOp is struct io_uring_probe_op.
type ProbeOp struct {
	Op    uint8
	Resv  uint8
	Flags uint16 // IO_URING_OP_SUPPORTED
	Resv2 uint32
}

// probeHeader is the fixed part of struct io_uring_probe.
type probeHeader struct {
	LastOp uint8
	OpsLen uint8
	Resv   uint16
	Resv2  [3]uint32
}

// rsrcRegister is struct io_uring_rsrc_register (IORING_REGISTER_FILES2).
type rsrcRegister struct {
	Nr    uint32
	Flags uint32
	Resv2 uint64
	Data  uint64
	Tags  uint64
}

// rsrcUpdate is struct io_uring_rsrc_update (IORING_REGISTER_FILES_UPDATE).
type rsrcUpdate struct {
	Offset uint32
	Resv   uint32
	Data   uint64
}

// Opcodes (enum io_uring_op; sqe->opcode). The minimum kernel is given for
// those the engine uses; IORING_REGISTER_PROBE reports what a kernel has.
const (
	IORING_OP_NOP             = 0  // 5.1
	IORING_OP_READV           = 1  // 5.1
	IORING_OP_WRITEV          = 2  // 5.1
	IORING_OP_FSYNC           = 3  // 5.1
	IORING_OP_READ_FIXED      = 4  // 5.1
	IORING_OP_WRITE_FIXED     = 5  // 5.1
	IORING_OP_POLL_ADD        = 6  // 5.1
	IORING_OP_POLL_REMOVE     = 7  // 5.1
	IORING_OP_SYNC_FILE_RANGE = 8  // 5.2
	IORING_OP_SENDMSG         = 9  // 5.3
	IORING_OP_RECVMSG         = 10 // 5.3
	IORING_OP_TIMEOUT         = 11 // 5.4
	IORING_OP_TIMEOUT_REMOVE  = 12 // 5.5
	IORING_OP_ACCEPT          = 13 // 5.5
	IORING_OP_ASYNC_CANCEL    = 14 // 5.5
	IORING_OP_LINK_TIMEOUT    = 15 // 5.5
	IORING_OP_CONNECT         = 16 // 5.5
	IORING_OP_FALLOCATE       = 17 // 5.6
	IORING_OP_OPENAT          = 18 // 5.6
	IORING_OP_CLOSE           = 19 // 5.6
	IORING_OP_FILES_UPDATE    = 20 // 5.6
	IORING_OP_STATX           = 21 // 5.6
	IORING_OP_READ            = 22 // 5.6
	IORING_OP_WRITE           = 23 // 5.6
	IORING_OP_FADVISE         = 24 // 5.6
	IORING_OP_MADVISE         = 25 // 5.6
	IORING_OP_SEND            = 26 // 5.6
	IORING_OP_RECV            = 27 // 5.6
	IORING_OP_OPENAT2         = 28 // 5.6
	IORING_OP_EPOLL_CTL       = 29 // 5.6
	IORING_OP_SPLICE          = 30 // 5.7
	IORING_OP_PROVIDE_BUFFERS = 31 // 5.7
	IORING_OP_REMOVE_BUFFERS  = 32 // 5.7
	IORING_OP_TEE             = 33 // 5.8
	IORING_OP_SHUTDOWN        = 34 // 5.11
	IORING_OP_RENAMEAT        = 35 // 5.11
	IORING_OP_UNLINKAT        = 36 // 5.11
	IORING_OP_MKDIRAT         = 37 // 5.15
	IORING_OP_SYMLINKAT       = 38 // 5.15
	IORING_OP_LINKAT          = 39 // 5.15
	IORING_OP_MSG_RING        = 40 // 5.18
	IORING_OP_FSETXATTR       = 41 // 5.19
	IORING_OP_SETXATTR        = 42 // 5.19
	IORING_OP_FGETXATTR       = 43 // 5.19
	IORING_OP_GETXATTR        = 44 // 5.19
	IORING_OP_SOCKET          = 45 // 5.19
	IORING_OP_URING_CMD       = 46 // 5.19
	IORING_OP_SEND_ZC         = 47 // 6.0
	IORING_OP_SENDMSG_ZC      = 48 // 6.1
)

// SQE flags (sqe->flags).
const (
	IOSQE_FIXED_FILE       = 1 << 0 // Fd (and SpliceFdIn with SPLICE_F_FD_IN_FIXED) is a registered-file index; 5.1
	IOSQE_IO_DRAIN         = 1 << 1 // start only when all earlier SQEs have completed; 5.2
	IOSQE_IO_LINK          = 1 << 2 // the next SQE starts when this one succeeds; a failure or short result cancels the rest of the chain (-ECANCELED); 5.3
	IOSQE_IO_HARDLINK      = 1 << 3 // like IOSQE_IO_LINK, but a failure does not cancel the chain; 5.5
	IOSQE_ASYNC            = 1 << 4 // always issue from an io-wq worker; 5.6
	IOSQE_BUFFER_SELECT    = 1 << 5 // pick a provided buffer from BufIndex's group; 5.7
	IOSQE_CQE_SKIP_SUCCESS = 1 << 6 // post no CQE when the request succeeds; 5.17
)

// Setup flags (io_uring_params.flags).
const (
	IORING_SETUP_IOPOLL             = 1 << 0  // busy-poll completions (O_DIRECT block I/O only); 5.1
	IORING_SETUP_SQPOLL             = 1 << 1  // a kernel thread polls the SQ; Submit enters only to wake it; 5.1 (unprivileged since 5.11)
	IORING_SETUP_SQ_AFF             = 1 << 2  // pin the SQPOLL thread to SQThreadCPU; 5.1
	IORING_SETUP_CQSIZE             = 1 << 3  // Params.CQEntries sets the CQ size; 5.5
	IORING_SETUP_CLAMP              = 1 << 4  // clamp entries to the maximum (32768 SQ) instead of EINVAL; 5.6
	IORING_SETUP_ATTACH_WQ          = 1 << 5  // share the io-wq of the ring Params.WQFd; 5.6
	IORING_SETUP_R_DISABLED         = 1 << 6  // start disabled until IORING_REGISTER_ENABLE_RINGS; 5.10
	IORING_SETUP_SUBMIT_ALL         = 1 << 7  // keep submitting the batch after an SQE fails to prep; 5.18
	IORING_SETUP_COOP_TASKRUN       = 1 << 8  // no IPI to run completion task work; it runs at the next enter; 5.19
	IORING_SETUP_TASKRUN_FLAG       = 1 << 9  // with COOP_TASKRUN or DEFER_TASKRUN: set IORING_SQ_TASKRUN when an enter is needed; 5.19
	IORING_SETUP_SQE128             = 1 << 10 // 128-byte SQEs; 5.19; not supported by this package (Setup returns EINVAL)
	IORING_SETUP_CQE32              = 1 << 11 // 32-byte CQEs; 5.19; not supported by this package (Setup returns EINVAL)
	IORING_SETUP_SINGLE_ISSUER      = 1 << 12 // only one task (OS thread) submits; others get EEXIST; 6.0
	IORING_SETUP_DEFER_TASKRUN      = 1 << 13 // completions posted only when the issuer enters with GETEVENTS; needs SINGLE_ISSUER; 6.1
	IORING_SETUP_NO_MMAP            = 1 << 14 // rings in user memory; 6.5; not supported by this package (Setup returns EINVAL)
	IORING_SETUP_REGISTERED_FD_ONLY = 1 << 15 // 6.5; not supported by this package (Setup returns EINVAL)
	IORING_SETUP_NO_SQARRAY         = 1 << 16 // no SQ index array: SQEs are consumed in ring order; 6.6
)

// Features reported by the kernel (io_uring_params.features).
const (
	IORING_FEAT_SINGLE_MMAP     = 1 << 0  // SQ and CQ rings share one mapping; 5.4
	IORING_FEAT_NODROP          = 1 << 1  // CQEs are never dropped: overflow is kept and flushed later; 5.5
	IORING_FEAT_SUBMIT_STABLE   = 1 << 2  // SQE data is consumed at submit; 5.5
	IORING_FEAT_RW_CUR_POS      = 1 << 3  // offset -1 means the file position for read/write; 5.6
	IORING_FEAT_CUR_PERSONALITY = 1 << 4  // 5.6
	IORING_FEAT_FAST_POLL       = 1 << 5  // internal poll instead of io-wq for pollable fds; 5.7
	IORING_FEAT_POLL_32BITS     = 1 << 6  // 32-bit poll masks; 5.9
	IORING_FEAT_SQPOLL_NONFIXED = 1 << 7  // SQPOLL without registered files; 5.11
	IORING_FEAT_EXT_ARG         = 1 << 8  // IORING_ENTER_EXT_ARG; 5.11
	IORING_FEAT_NATIVE_WORKERS  = 1 << 9  // io-wq workers are threads of the task; 5.12
	IORING_FEAT_RSRC_TAGS       = 1 << 10 // 5.13
	IORING_FEAT_CQE_SKIP        = 1 << 11 // IOSQE_CQE_SKIP_SUCCESS; 5.17
	IORING_FEAT_LINKED_FILE     = 1 << 12 // files of linked SQEs resolved when the SQE starts; 5.17
	IORING_FEAT_REG_REG_RING    = 1 << 13 // 6.3
)

// io_uring_enter(2) flags.
const (
	IORING_ENTER_GETEVENTS       = 1 << 0 // wait for minComplete CQEs (and run pending task work, flush overflow); 5.1
	IORING_ENTER_SQ_WAKEUP       = 1 << 1 // wake the SQPOLL thread; 5.1
	IORING_ENTER_SQ_WAIT         = 1 << 2 // SQPOLL: wait until the SQ has space; 5.10
	IORING_ENTER_EXT_ARG         = 1 << 3 // 5.11
	IORING_ENTER_REGISTERED_RING = 1 << 4 // 5.18
)

// SQ ring flags (the word at SQRingOffsets.Flags, written by the kernel).
const (
	IORING_SQ_NEED_WAKEUP = 1 << 0 // the SQPOLL thread sleeps: enter with IORING_ENTER_SQ_WAKEUP
	IORING_SQ_CQ_OVERFLOW = 1 << 1 // CQEs wait in the overflow list: enter with GETEVENTS after reaping; 5.5
	IORING_SQ_TASKRUN     = 1 << 2 // task work pending (TASKRUN_FLAG): enter with GETEVENTS; 5.19
)

// CQ ring flags (the word at CQRingOffsets.Flags, written by the application).
const (
	IORING_CQ_EVENTFD_DISABLED = 1 << 0 // no eventfd notifications; 5.8
)

// CQE flags (cqe->flags).
const (
	IORING_CQE_F_BUFFER        = 1 << 0 // upper 16 bits hold the provided buffer ID
	IORING_CQE_F_MORE          = 1 << 1 // the SQE (multishot) will post more CQEs; 5.13
	IORING_CQE_F_SOCK_NONEMPTY = 1 << 2 // more data to read after a socket recv; 5.19
	IORING_CQE_F_NOTIF         = 1 << 3 // zero-copy send notification; 6.0
	IORING_CQE_BUFFER_SHIFT    = 16
)

// mmap(2) offsets of the three regions of a ring.
const (
	IORING_OFF_SQ_RING = 0
	IORING_OFF_CQ_RING = 0x8000000
	IORING_OFF_SQES    = 0x10000000
)

// Timeout flags (sqe->timeout_flags).
const (
	IORING_TIMEOUT_ABS           = 1 << 0 // absolute time; 5.5
	IORING_TIMEOUT_UPDATE        = 1 << 1 // 5.11
	IORING_TIMEOUT_BOOTTIME      = 1 << 2 // 5.15
	IORING_TIMEOUT_REALTIME      = 1 << 3 // 5.15
	IORING_LINK_TIMEOUT_UPDATE   = 1 << 4 // 5.15
	IORING_TIMEOUT_ETIME_SUCCESS = 1 << 5 // count -ETIME as success for links; 5.16
)

// SPLICE_F_FD_IN_FIXED in sqe->splice_flags: SpliceFdIn is a registered-file
// index (5.7). The other splice flags are unix.SPLICE_F_MOVE,
// unix.SPLICE_F_NONBLOCK, unix.SPLICE_F_MORE and unix.SPLICE_F_GIFT.
const SPLICE_F_FD_IN_FIXED = 1 << 31

// Poll command flags (sqe->len of IORING_OP_POLL_ADD / POLL_REMOVE).
const (
	IORING_POLL_ADD_MULTI        = 1 << 0 // multishot; 5.13
	IORING_POLL_UPDATE_EVENTS    = 1 << 1 // 5.13
	IORING_POLL_UPDATE_USER_DATA = 1 << 2 // 5.13
	IORING_POLL_ADD_LEVEL        = 1 << 3 // level-triggered; 6.0
)

// Cancel flags (sqe->cancel_flags).
const (
	IORING_ASYNC_CANCEL_ALL      = 1 << 0 // cancel every match, res = count; 5.19
	IORING_ASYNC_CANCEL_FD       = 1 << 1 // match on fd, not user_data; 5.19
	IORING_ASYNC_CANCEL_ANY      = 1 << 2 // match any request; 5.19
	IORING_ASYNC_CANCEL_FD_FIXED = 1 << 3 // the fd is a registered-file index; 6.0
	IORING_ASYNC_CANCEL_USERDATA = 1 << 4 // 6.6
	IORING_ASYNC_CANCEL_OP       = 1 << 5 // 6.6
)

// IORING_FILE_INDEX_ALLOC in sqe->file_index asks the kernel to pick a free
// registered-file slot (5.19).
const IORING_FILE_INDEX_ALLOC = ^uint32(0)

// io_uring_register(2) opcodes.
const (
	IORING_REGISTER_BUFFERS          = 0  // 5.1
	IORING_UNREGISTER_BUFFERS        = 1  // 5.1
	IORING_REGISTER_FILES            = 2  // 5.1
	IORING_UNREGISTER_FILES          = 3  // 5.1
	IORING_REGISTER_EVENTFD          = 4  // 5.2
	IORING_UNREGISTER_EVENTFD        = 5  // 5.2
	IORING_REGISTER_FILES_UPDATE     = 6  // 5.5
	IORING_REGISTER_EVENTFD_ASYNC    = 7  // 5.6
	IORING_REGISTER_PROBE            = 8  // 5.6
	IORING_REGISTER_PERSONALITY      = 9  // 5.6
	IORING_UNREGISTER_PERSONALITY    = 10 // 5.6
	IORING_REGISTER_RESTRICTIONS     = 11 // 5.10
	IORING_REGISTER_ENABLE_RINGS     = 12 // 5.10
	IORING_REGISTER_FILES2           = 13 // 5.13
	IORING_REGISTER_FILES_UPDATE2    = 14 // 5.13
	IORING_REGISTER_BUFFERS2         = 15 // 5.13
	IORING_REGISTER_BUFFERS_UPDATE   = 16 // 5.13
	IORING_REGISTER_IOWQ_AFF         = 17 // 5.14
	IORING_UNREGISTER_IOWQ_AFF       = 18 // 5.14
	IORING_REGISTER_IOWQ_MAX_WORKERS = 19 // 5.15
	IORING_REGISTER_RING_FDS         = 20 // 5.18
	IORING_UNREGISTER_RING_FDS       = 21 // 5.18
	IORING_REGISTER_PBUF_RING        = 22 // 5.19
	IORING_UNREGISTER_PBUF_RING      = 23 // 5.19
	IORING_REGISTER_SYNC_CANCEL      = 24 // 6.0
	IORING_REGISTER_FILE_ALLOC_RANGE = 25 // 6.0
)

// IORING_RSRC_REGISTER_SPARSE registers an all-empty table of nr slots with
// IORING_REGISTER_FILES2 (5.19).
const IORING_RSRC_REGISTER_SPARSE = 1 << 0

// IORING_REGISTER_FILES_SKIP in a files-update array leaves that slot as it is
// (5.12).
const IORING_REGISTER_FILES_SKIP = -2

// IO_URING_OP_SUPPORTED is set in ProbeOp.Flags for a supported opcode.
const IO_URING_OP_SUPPORTED = 1 << 0

// io-wq worker classes, the indices of the IORING_REGISTER_IOWQ_MAX_WORKERS
// argument.
const (
	IO_WQ_BOUND   = 0
	IO_WQ_UNBOUND = 1
)

// maxEntries is IORING_MAX_ENTRIES, the largest SQ size io_uring_setup(2)
// accepts without IORING_SETUP_CLAMP.
const maxEntries = 32768

// ioUringSetup is io_uring_setup(2). The returned fd is O_CLOEXEC.
func ioUringSetup(entries uint32, p *Params) (fd int, errno syscall.Errno) {
	r1, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	return int(r1), e
}

// ioUringEnter is io_uring_enter(2). It may block (minComplete > 0 with
// IORING_ENTER_GETEVENTS), so it goes through unix.Syscall6, which tells the
// Go scheduler the thread is in a system call.
func ioUringEnter(fd int, toSubmit, minComplete, flags uint32, sig unsafe.Pointer, sigsz uintptr) (int, syscall.Errno) {
	r1, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(fd), uintptr(toSubmit), uintptr(minComplete), uintptr(flags), uintptr(sig), sigsz)
	return int(r1), e
}

// ioUringRegister is io_uring_register(2).
func ioUringRegister(fd int, opcode uint32, arg unsafe.Pointer, nrArgs uint32) (int, syscall.Errno) {
	r1, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(fd), uintptr(opcode), uintptr(arg), uintptr(nrArgs), 0, 0)
	return int(r1), e
}

// escapeSink and escape force a value to the heap, like internal/abi.Escape:
// memory whose address goes to the kernel as an integer (SQE.Addr, the data
// pointers of register arguments) must not live on a goroutine stack, which
// the runtime may move.
var escapeSink struct {
	b bool
	x any
}

func escape[T any](x T) T {
	if escapeSink.b {
		escapeSink.x = x
	}
	return x
}
