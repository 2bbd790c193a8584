package fd

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Kind is what kind of file a descriptor is, for splicing.
type Kind uint8

const (
	KindNone   Kind = iota // not spliceable as a stream: a directory, symlink, datagram or listening socket
	KindOther              // character or block device: /dev/null, /dev/zero, ...
	KindFile               // regular file: has an offset, never waits
	KindPipe               // pipe or fifo: spliced directly
	KindSocket             // stream socket: TCP, unix SOCK_STREAM
)

func (k Kind) String() string {
	switch k {
	case KindFile:
		return "file"
	case KindPipe:
		return "pipe"
	case KindSocket:
		return "socket"
	case KindNone:
		return "none"
	}
	return "other"
}

// Info is what Inspect learnt of a descriptor.
type Info struct {
	Mode   uint32 // st_mode & S_IFMT
	Flags  int    // fcntl(F_GETFL): O_NONBLOCK, O_APPEND, ...; 0 where not read
	Size   int64  // st_size
	Dev    uint64 // st_dev and st_ino: which file it is; 0 in the known Infos
	Ino    uint64
	Kind   Kind
	Family int // a socket's address family, where known without a system call (NonblockUnixSocket); 0 from Inspect
}

// Need says what Inspect reads besides fstat(2).
type Need uint8

const (
	// Flags reads the status flags (fcntl F_GETFL).
	Flags Need = 1 << iota
	// FlagsIfWaits reads them only for a descriptor that can wait: not
	// a regular file or block device, which never answer EAGAIN and
	// whose O_APPEND the caller does not need.
	FlagsIfWaits
	// Stream checks that a socket is a stream socket that is not
	// listening (getsockopt SO_TYPE, SO_ACCEPTCONN); other sockets are
	// KindNone, with no error. It does not check that the socket is
	// connected: one that is not yet fails the copy's first splice.
	// With Stream, no flags are read for KindNone.
	Stream
)

// Known Infos of Go's own descriptors, which need no system call.
var (
	// NonblockPipe is a pipe or fifo in non-blocking mode, as
	// os.Pipe and os.OpenFile make them.
	NonblockPipe = Info{Mode: unix.S_IFIFO, Flags: unix.O_NONBLOCK, Kind: KindPipe}
	// NonblockSocket is a stream socket on Go's netpoller.
	NonblockSocket = Info{Mode: unix.S_IFSOCK, Flags: unix.O_NONBLOCK, Kind: KindSocket}
	// NonblockUnixSocket is a unix stream socket on Go's netpoller.
	NonblockUnixSocket = Info{Mode: unix.S_IFSOCK, Flags: unix.O_NONBLOCK, Kind: KindSocket, Family: unix.AF_UNIX}
)

// Inspect fstats the descriptor behind c and reads what need asks for,
// under Go's reference to it (c.Control). Errors are c's, or an
// *os.SyscallError of fstat or fcntl.
func Inspect(c syscall.RawConn, need Need) (Info, error) {
	// One allocation for the callback's results, not one per result.
	x := &inspection{need: need}
	if cerr := c.Control(x.run); cerr != nil {
		return x.info, cerr
	}
	return x.info, x.err
}

// inspection is one Inspect's callback and its results.
type inspection struct {
	need Need
	info Info
	err  error
}

func (x *inspection) run(sysfd uintptr) { x.info, x.err = inspect(int(sysfd), x.need) }

func inspect(fd int, need Need) (info Info, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return info, os.NewSyscallError("fstat", err)
	}
	info.Mode, info.Size = st.Mode&unix.S_IFMT, st.Size
	info.Dev, info.Ino = uint64(st.Dev), st.Ino // Dev is 32 bits wide on some 32-bit systems
	switch info.Mode {
	case unix.S_IFREG:
		info.Kind = KindFile
	case unix.S_IFIFO:
		info.Kind = KindPipe
	case unix.S_IFCHR, unix.S_IFBLK:
		info.Kind = KindOther
	case unix.S_IFSOCK:
		info.Kind = KindSocket
		if need&Stream != 0 && !streamSocket(fd) {
			info.Kind = KindNone
		}
	}
	if need&Stream != 0 && info.Kind == KindNone {
		return info, nil // nothing more matters
	}
	if need&(Flags|FlagsIfWaits) == 0 || need&Flags == 0 && (info.Mode == unix.S_IFREG || info.Mode == unix.S_IFBLK) {
		return info, nil
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return info, os.NewSyscallError("fcntl", err)
	}
	info.Flags = fl
	return info, nil
}

// streamSocket reports a stream socket that is not listening. A
// listening socket never becomes readable or writable for splice: the
// copy would wait forever. In userspace it fails at once, as io.Copy
// does (read: ENOTCONN; write, once there is something to write: EPIPE).
// A socket not connected (yet) is a stream socket here: splice from it
// fails at once (TCP: ENOTCONN; unix: EINVAL, which the copy takes for
// a refusal, and read(2) then fails with it), and so does splice into
// it (TCP: EPIPE; unix: ENOTCONN).
func streamSocket(fd int) bool {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil || typ != unix.SOCK_STREAM {
		return false
	}
	l, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	return err == nil && l == 0
}
