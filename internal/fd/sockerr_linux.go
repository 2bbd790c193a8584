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

// TCPAborted reports whether the TCP socket behind c was connected and
// is closed without having been shut down for writing, as a reset or a
// timeout leaves it (TCP_INFO's state is TCP_CLOSE, and it received
// segments: a socket never connected is in TCP_CLOSE too). A read of
// such a socket answers EOF once a write took the error that closed it;
// a socket whose peer only half-closed is in CLOSE_WAIT. It is false
// when c is not a TCP socket or getsockopt fails (and before Linux 4.2,
// which counts no segments); the caller knows that it has not shut the
// socket down for writing (after a shutdown, a clean close ends in
// TCP_CLOSE too).
func TCPAborted(c syscall.RawConn) bool {
	var info *unix.TCPInfo
	var err error
	if cerr := c.Control(func(s uintptr) {
		info, err = unix.GetsockoptTCPInfo(int(s), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); cerr != nil || err != nil {
		return false
	}
	return info.State == tcpClose && info.Segs_in > 0
}

// tcpClose is TCP_CLOSE of include/net/tcp_states.h, a TCP_INFO state.
const tcpClose = 7
