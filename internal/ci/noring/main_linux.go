package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// auditArch is the AUDIT_ARCH_* value of a seccomp_data for GOARCH.
var auditArch = map[string]uint32{
	"amd64":   0xc000003e,
	"arm64":   0xc00000b7,
	"riscv64": 0xc00000f3,
	"ppc64le": 0xc0000015,
	"s390x":   0x80000016,
}

func main() {
	errno := flag.Int("errno", int(unix.EPERM), "errno io_uring_setup fails with")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: noring [-errno N] command [args...]")
		os.Exit(2)
	}
	if err := refuseRingSetup(syscall.Errno(*errno)); err != nil {
		fmt.Fprintln(os.Stderr, "noring:", err)
		os.Exit(1)
	}
	path, err := exec.LookPath(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "noring:", err)
		os.Exit(2)
	}
	err = syscall.Exec(path, flag.Args(), os.Environ())
	fmt.Fprintln(os.Stderr, "noring: exec:", err)
	os.Exit(1)
}

// refuseRingSetup installs, on every thread of the process, a seccomp
// filter under which io_uring_setup fails with errno and every other
// system call runs.
func refuseRingSetup(errno syscall.Errno) error {
	arch, ok := auditArch[runtime.GOARCH]
	if !ok {
		return fmt.Errorf("no seccomp audit arch known for %s", runtime.GOARCH)
	}
	const (
		archOff = 4 // offsetof(struct seccomp_data, arch)
		nrOff   = 0 // offsetof(struct seccomp_data, nr)
	)
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: archOff},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: arch, Jt: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW}, // another ABI
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: nrOff},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_IO_URING_SETUP, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(errno)&unix.SECCOMP_RET_DATA},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	// TSYNC: the Go runtime has started threads already.
	_, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(&prog)
	if e != 0 {
		return fmt.Errorf("seccomp(SET_MODE_FILTER): %w", e)
	}
	return nil
}
