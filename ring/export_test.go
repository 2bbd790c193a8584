//go:build linux

package ring

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SetSetupSyscall replaces io_uring_setup(2) for a test and returns a
// function that restores it.
func SetSetupSyscall(f func(entries uint32, p *Params) (int, syscall.Errno)) (restore func()) {
	old := setupSyscall
	setupSyscall = f
	return func() { setupSyscall = old }
}

// SetMmap replaces unix.Mmap for a test.
func SetMmap(f func(fd int, offset int64, length int, prot int, flags int) ([]byte, error)) (restore func()) {
	old := mmapFunc
	mmapFunc = f
	return func() { mmapFunc = old }
}

// FailRegister makes io_uring_register(2) with opcode fail with errno.
func FailRegister(opcode uint32, errno syscall.Errno) (restore func()) {
	old := registerFunc
	registerFunc = func(fd int, op uint32, arg unsafe.Pointer, nr uint32) (int, syscall.Errno) {
		if op == opcode {
			return -1, errno
		}
		return old(fd, op, arg, nr)
	}
	return func() { registerFunc = old }
}

// Mmap is the real mmap, for tests that wrap it.
var Mmap = unix.Mmap

// Unexported ABI structs, for the layout test.
type (
	ProbeHeader  = probeHeader
	RsrcRegister = rsrcRegister
	RsrcUpdate   = rsrcUpdate
)

const MaxEntries = maxEntries
