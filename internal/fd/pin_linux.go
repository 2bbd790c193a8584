package fd

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Pin duplicates the descriptor behind c (F_DUPFD_CLOEXEC) under Go's
// reference to it. The duplicate keeps the open file (or socket) alive,
// and its number stays ours, until it is closed: what an SQE that io-wq
// resolves later needs.
func Pin(c syscall.RawConn) (fd int, err error) {
	fd = -1
	cerr := c.Control(func(sysfd uintptr) {
		fd, err = unix.FcntlInt(sysfd, unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			err = &os.SyscallError{Syscall: "fcntl", Err: err}
			fd = -1
		}
	})
	if cerr != nil {
		return -1, cerr
	}
	return fd, err
}
