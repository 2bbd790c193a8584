package fd

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// SocketError reads, and so clears, the error pending on the socket
// behind c (getsockopt SO_ERROR): the errno a reset or a timeout left
// that no read or write has reported yet. It is nil when none is
// pending, and when c is not a socket or getsockopt fails.
func SocketError(c syscall.RawConn) error {
	var v int
	var err error
	if cerr := c.Control(func(s uintptr) {
		v, err = unix.GetsockoptInt(int(s), unix.SOL_SOCKET, unix.SO_ERROR)
	}); cerr != nil || err != nil || v == 0 {
		return nil
	}
	return syscall.Errno(v)
}
