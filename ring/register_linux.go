//go:build linux

package ring

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// register is io_uring_register(2) on this ring, retried on EINTR (some
// registrations wait for the ring to quiesce and are interruptible). On
// error the count is 0. After Close it fails, matching os.ErrClosed,
// without a system call.
func (r *Ring) register(name string, opcode uint32, arg unsafe.Pointer, nrArgs uint32) (int, error) {
	if r.closed() {
		return 0, errClosed("io_uring_register(" + name + ")")
	}
	for {
		n, errno := registerFunc(r.fd, opcode, arg, nrArgs)
		if errno == 0 {
			return n, nil
		}
		if errno != unix.EINTR {
			return 0, fmt.Errorf("io_uring_register(%s): %w", name, errno)
		}
	}
}

// Register is raw io_uring_register(2) for opcodes without a method here.
// arg must point to memory that does not move (heap, or mapped); nrArgs is
// opcode-specific. It returns the system call's result, 0 on error.
// EINTR is retried; errors wrap the syscall.Errno. After Close every
// Register method, Probe included, fails with an error matching
// os.ErrClosed.
func (r *Ring) Register(opcode uint32, arg unsafe.Pointer, nrArgs uint32) (int, error) {
	return r.register(fmt.Sprint(opcode), opcode, arg, nrArgs)
}

// probeOps is the number of ops a Probe has room for: every possible
// opcode.
const probeOps = 256

// Probe is struct io_uring_probe with room for all 256 opcodes: which
// opcodes the running kernel supports.
type Probe struct {
	hdr probeHeader
	ops [probeOps]ProbeOp
}

// Probe asks the kernel which opcodes it supports (IORING_REGISTER_PROBE,
// 5.6). Before 5.6 the error wraps EINVAL.
func (r *Ring) Probe() (*Probe, error) {
	p := new(Probe)
	if _, err := r.register("IORING_REGISTER_PROBE", IORING_REGISTER_PROBE, unsafe.Pointer(p), probeOps); err != nil {
		return nil, err
	}
	return p, nil
}

// ProbeKernel sets up a two-entry ring, probes it and closes it. Errors are
// those of Setup and Probe (ENOSYS, EPERM: no io_uring; EINVAL: no probe).
func ProbeKernel() (*Probe, error) {
	r, err := Setup(2, nil)
	if err != nil {
		return nil, err
	}
	p, err := r.Probe()
	if cerr := r.Close(); err == nil && cerr != nil {
		return nil, cerr
	}
	return p, err
}

// Supported reports whether the kernel supports opcode op (IORING_OP_*).
// A nil Probe (that of a failed probe) supports nothing.
func (p *Probe) Supported(op uint8) bool {
	if p == nil {
		return false
	}
	return op <= p.hdr.LastOp && p.ops[op].Flags&IO_URING_OP_SUPPORTED != 0
}

// LastOp returns the highest opcode the kernel knows; 0 for a nil Probe.
func (p *Probe) LastOp() uint8 {
	if p == nil {
		return 0
	}
	return p.hdr.LastOp
}

// Ops returns the per-opcode entries the kernel filled in, indexed by
// opcode; nil for a nil Probe.
func (p *Probe) Ops() []ProbeOp {
	if p == nil {
		return nil
	}
	return p.ops[:min(int(p.hdr.OpsLen), probeOps)]
}

// RegisterEventfd registers an eventfd that the kernel signals (adds 1 to)
// whenever it posts CQEs (IORING_REGISTER_EVENTFD, 5.2). Open it with
// unix.EFD_NONBLOCK|unix.EFD_CLOEXEC and read it through os.NewFile to wait
// in the Go netpoller. A signal may cover several CQEs, and a CQE may be
// posted just before it: after a wake-up, drain the whole CQ. EBUSY if one
// is already registered. Either side.
func (r *Ring) RegisterEventfd(fd int) error {
	efd := escape(&[1]int32{int32(fd)})
	_, err := r.register("IORING_REGISTER_EVENTFD", IORING_REGISTER_EVENTFD, unsafe.Pointer(efd), 1)
	return err
}

// UnregisterEventfd unregisters the eventfd (IORING_UNREGISTER_EVENTFD,
// 5.2): ENXIO if none is registered. The eventfd itself stays open.
func (r *Ring) UnregisterEventfd() error {
	_, err := r.register("IORING_UNREGISTER_EVENTFD", IORING_UNREGISTER_EVENTFD, nil, 0)
	return err
}

// RegisterFilesSparse registers a table of n empty registered-file slots,
// for RegisterFilesUpdate, IOSQE_FIXED_FILE and SPLICE_F_FD_IN_FIXED. It
// uses IORING_REGISTER_FILES2 with IORING_RSRC_REGISTER_SPARSE (5.19) and,
// where that gives EINVAL, IORING_REGISTER_FILES with n entries of -1
// (5.5). Errors: EBUSY (a table is already registered), EMFILE (n above
// RLIMIT_NOFILE), EINVAL (n 0 or above the kernel's limit).
func (r *Ring) RegisterFilesSparse(n uint32) error {
	reg := escape(&rsrcRegister{Nr: n, Flags: IORING_RSRC_REGISTER_SPARSE})
	_, err := r.register("IORING_REGISTER_FILES2", IORING_REGISTER_FILES2, unsafe.Pointer(reg), uint32(unsafe.Sizeof(*reg)))
	if err == nil || !errors.Is(err, unix.EINVAL) || n == 0 {
		return err
	}
	fds := make([]int32, n)
	for i := range fds {
		fds[i] = -1
	}
	_, err = r.register("IORING_REGISTER_FILES", IORING_REGISTER_FILES, unsafe.Pointer(&fds[0]), n)
	return err
}

// RegisterFilesUpdate puts fds into the registered-file slots off,
// off+1, ... (IORING_REGISTER_FILES_UPDATE, 5.5) and returns the number of
// slots updated. The kernel takes its own reference: the caller may close
// its fds afterwards. -1 clears a slot (requests in flight keep their file
// until they complete); IORING_REGISTER_FILES_SKIP leaves it. A bad fd
// stops the update there: the slots before it are updated, and the count,
// short of len(fds), says how many, with a nil error; only when the first
// fd is bad does it fail, with EBADF. Other errors: ENXIO (no table),
// EINVAL (off+len beyond the table: no slot is updated), EOVERFLOW
// (off+len beyond 2^32); the count is 0 on error.
func (r *Ring) RegisterFilesUpdate(off uint32, fds []int32) (int, error) {
	if r.closed() {
		return 0, errClosed("io_uring_register(IORING_REGISTER_FILES_UPDATE)")
	}
	if len(fds) == 0 {
		return 0, nil
	}
	fds = escape(fds)
	up := &rsrcUpdate{Offset: off, Data: uint64(uintptr(unsafe.Pointer(&fds[0])))}
	n, err := r.register("IORING_REGISTER_FILES_UPDATE", IORING_REGISTER_FILES_UPDATE, unsafe.Pointer(up), uint32(len(fds)))
	runtime.KeepAlive(fds)
	return n, err
}

// UnregisterFiles drops the registered-file table (IORING_UNREGISTER_FILES,
// 5.1): ENXIO if there is none. It waits for requests using the table.
func (r *Ring) UnregisterFiles() error {
	_, err := r.register("IORING_UNREGISTER_FILES", IORING_UNREGISTER_FILES, nil, 0)
	return err
}

// RegisterIOWQMaxWorkers caps the io-wq worker threads per NUMA node for
// bounded (regular file and block I/O) and unbounded (pipes, sockets:
// SPLICE to a pipe or socket) work (IORING_REGISTER_IOWQ_MAX_WORKERS, 5.15).
// A zero count leaves that cap as it is, so (0, 0) only reads. The caps
// apply to every thread that submits to this ring, now and later (with
// SQPOLL: to the SQ thread). The previous values returned are those of the
// calling OS thread's io-wq, or 0, 0 if this thread has never submitted to
// an io_uring: lock the goroutine to its thread (runtime.LockOSThread) and
// submit from it first for a meaningful read. An io-wq belongs to a thread
// and serves every ring that thread submits to, so the caps also bind the
// thread's other rings; a thread that submits later inherits this ring's
// caps (measured on 6.18: a fresh thread read 0, 0, then 2, 3 after one
// submission). EINVAL before 5.15.
func (r *Ring) RegisterIOWQMaxWorkers(bounded, unbounded uint32) (prevBounded, prevUnbounded uint32, err error) {
	counts := escape(&[2]uint32{IO_WQ_BOUND: bounded, IO_WQ_UNBOUND: unbounded})
	if _, err := r.register("IORING_REGISTER_IOWQ_MAX_WORKERS", IORING_REGISTER_IOWQ_MAX_WORKERS, unsafe.Pointer(counts), 2); err != nil {
		return 0, 0, err
	}
	return counts[IO_WQ_BOUND], counts[IO_WQ_UNBOUND], nil
}
