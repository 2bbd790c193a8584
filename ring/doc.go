// Package ring is a small, literal io_uring binding written directly on
// golang.org/x/sys/unix: no cgo, no liburing. It keeps the kernel's names
// (IORING_OP_SPLICE, IOSQE_IO_LINK, ...) and liburing's method names
// (GetSQE for io_uring_get_sqe, PeekBatchCQE for io_uring_peek_batch_cqe,
// PrepSplice for io_uring_prep_splice, ...), so a reader of the io_uring
// man pages or of liburing finds their way. It holds no policy: which
// operations to submit, and when, is the caller's business.
//
// The API exists on Linux only; on other systems the package is empty.
// Setup needs Linux 5.1; every other feature states its minimum kernel in
// its doc comment. Setup errors wrap the syscall.Errno, so callers can test
// errors.Is(err, unix.ENOSYS) (no io_uring, or seccomp), unix.EPERM
// (kernel.io_uring_disabled, seccomp) or errors.ErrUnsupported to fall back.
//
// # Concurrency
//
// A Ring is not safe for concurrent use. It has two sides:
//
//   - the submission side (GetSQE, SQReady, SQSpaceLeft, Submit,
//     SubmitAndWait): one goroutine at a time;
//   - the completion side (CQReady, PeekBatchCQE, CQAdvance, WaitCQE,
//     CQOverflowPending, FlushOverflow): one goroutine at a time.
//
// The two sides may run in two different goroutines at once; callers
// serialize within a side. Enter, Probe and the Register methods may be
// called from either side; Close from neither while the other runs.
//
// After Close (and on a Ring not made by Setup) no method panics or
// touches memory or a descriptor: the methods with an error fail with one
// for which errors.Is(err, os.ErrClosed) holds, GetSQE returns nil, the
// counts are 0, and Close returns nil.
//
// With IORING_SETUP_SINGLE_ISSUER (6.0) every submission, and with
// IORING_SETUP_DEFER_TASKRUN (6.1) every io_uring_enter that waits or reaps,
// must come from the same OS thread (otherwise EEXIST): do them all from
// one goroutine that called runtime.LockOSThread before Setup.
//
// SQE memory is shared with the kernel: an *SQE from GetSQE is valid until
// the next Submit. Pointers handed to the kernel as integers (the timespec
// of PrepTimeout and PrepLinkTimeout) must stay reachable until the kernel
// has read them.
package ring
