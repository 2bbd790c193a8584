//go:build linux

package splice

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Flags for Splice and Tee, as the kernel names them.
const (
	// FlagMove asks the kernel to move pages instead of copying them (a
	// hint; since Linux 2.6.21 it has no effect).
	FlagMove = unix.SPLICE_F_MOVE
	// FlagNonblock makes the pipe side of the call non-blocking. The other
	// descriptor's own O_NONBLOCK decides whether it blocks.
	FlagNonblock = unix.SPLICE_F_NONBLOCK
	// FlagMore tells a socket destination that more data follows.
	FlagMore = unix.SPLICE_F_MORE
)

// Splice calls splice(2): it moves up to n bytes from rfd to wfd, one of
// which must be a pipe. roff and woff are the offsets for non-pipe
// descriptors; nil means the descriptor's file offset, which then
// advances. It retries EINTR. It returns 0, nil at end of input (the
// source pipe has no writers, the socket peer shut down, or the file
// offset is at EOF). Errors, with a count of 0, are the kernel's errno as
// a syscall.Errno, unwrapped: EAGAIN (a non-blocking side is not ready),
// EINVAL (the pair cannot be spliced, an O_APPEND destination, neither
// side a pipe; and n < 0, without a system call: the kernel would read it
// as a size_t, as large as it allows), EPIPE, ECONNRESET, EBADF, ...
func Splice(rfd int, roff *int64, wfd int, woff *int64, n int, flags int) (int, error) {
	if n < 0 {
		return 0, unix.EINVAL
	}
	for {
		m, err := unix.Splice(rfd, roff, wfd, woff, n, flags)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, errno(err)
		}
		return int(m), nil
	}
}

// Tee calls tee(2): it duplicates up to n bytes from the pipe rfd into the
// pipe wfd without consuming them from rfd. It always starts at the head
// of rfd, so a short result cannot be resumed by a second Tee. It retries
// EINTR. It returns 0, nil when rfd is empty and has no writers. Errors,
// with a count of 0, are the errno as a syscall.Errno: EAGAIN, EINVAL (not
// two different pipes; and n < 0, without a system call).
func Tee(rfd, wfd int, n int, flags int) (int, error) {
	if n < 0 {
		return 0, unix.EINVAL
	}
	for {
		m, err := unix.Tee(rfd, wfd, n, flags)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, errno(err)
		}
		return int(m), nil
	}
}

// errno returns err as a syscall.Errno where it is one.
func errno(err error) error {
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	return err
}

// ReadMark is for a splice from the stream socket fd into an empty pipe
// that returned 0. At TCP's urgent mark splice(2) returns 0 as it does at
// EOF, and would go on returning 0: read(2) steps over the urgent byte
// (not inline, as by default) and goes on, as io.Copy's does. ReadMark
// reads up to n bytes (at most 64 KiB) from fd and writes them into the
// pipe wfd, which must have room for them (it is empty and n is at most
// its size). It returns the bytes moved: 0, nil at a real EOF; EAGAIN
// (a syscall.Errno) when fd has no input now. n must be above 0: n 0
// reads nothing and returns 0, nil as at EOF (read(2) of 0 bytes), and
// n < 0 returns EINVAL.
func ReadMark(fd, wfd int, n int) (int, error) {
	if n < 0 {
		return 0, unix.EINVAL
	}
	buf := make([]byte, min(n, bufferSize))
	for {
		m, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil || m <= 0 {
			return 0, errno(err)
		}
		for w := 0; w < m; {
			k, err := unix.Write(wfd, buf[w:m])
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return w, errno(err)
			}
			w += k
		}
		return m, nil
	}
}

// peek calls recv(2) with MSG_PEEK|MSG_DONTWAIT for one byte of the
// socket fd: 1 when input is there (after TCP's urgent mark too: recv
// steps over an urgent byte that is not inline), 0 at EOF, EAGAIN when
// there is none yet, or the socket's pending error (a reset), which it
// clears as a read does, so that a read after it finds EOF. It retries
// EINTR and allocates nothing (x/sys's Recvfrom builds the peer's
// address, for a unix socket on the heap).
func peek(fd int, b *[1]byte) (int, error) {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		}
		return 0, e
	}
}
