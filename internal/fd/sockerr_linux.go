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

// SocketCookie is the socket's SO_COOKIE: a 64-bit number the kernel
// gives each socket once, which never wraps, unlike its inode number.
// ok is false where c is not a socket or the kernel has none (before
// Linux 4.12).
func SocketCookie(c syscall.RawConn) (cookie uint64, ok bool) {
	var err error
	if cerr := c.Control(func(s uintptr) {
		cookie, err = unix.GetsockoptUint64(int(s), unix.SOL_SOCKET, unix.SO_COOKIE)
	}); cerr != nil || err != nil {
		return 0, false
	}
	return cookie, true
}
