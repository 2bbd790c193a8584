//go:build !pipes_portable

package pipes

import (
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fd"
	"github.com/pipes-go/pipes/splice"
)

// fdKind is what kind of file an endpoint's descriptor is, as fstat tells
// (internal/fd classifies).
type fdKind = fd.Kind

const (
	kindOther  = fd.KindOther  // character or block device: /dev/null, /dev/zero, ...
	kindFile   = fd.KindFile   // regular file: has an offset, never waits
	kindPipe   = fd.KindPipe   // pipe or fifo: spliced directly
	kindSocket = fd.KindSocket // stream socket: TCP, unix SOCK_STREAM
)

// endpoint describes an io.Reader or io.Writer the kernel can splice:
// the splice.End that splice.Copy and splice.Sendfile take, and what
// internal/fd found the descriptor is. Its End has no Wake or Reset: the
// engine interrupts a copy's waits itself (deadlines in the past on the
// caller's values: lifetime.interrupt, and interruptOnDone for a ring
// copy), so a copy allocates no closures for them. A destination's Meter
// counts the bytes delivered to it as they move; a source's Pacer (a
// Limiter, or the ring's Warmer) is asked before each read, and its Gate
// (the Warmer) bounds how many copies are in a sendfile(2) call at once
// (engine_linux.go). Each is nil where unused, never a typed nil.
type endpoint struct {
	splice.End // Conn, Pipe (kind == kindPipe), Info read once
	kind       fdKind
	size       int64  // kindFile: the size fstat reported
	dev        uint64 // kindFile: the st_dev fstat reported
}

// set makes e the endpoint of the descriptor behind rc that internal/fd
// found to be info. The endpoint functions fill the caller's endpoint
// through a pointer rather than return one: an endpoint is over a
// hundred bytes, and copying it up each level cost a short copy more
// than its classification (docs/benchmarks.md, "Small messages and the
// proxy").
// Field by field: a composite literal assigned through the pointer is
// built in a temporary and moved, write barriers and all.
func (e *endpoint) set(rc syscall.RawConn, info fd.Info) {
	e.Conn, e.Pipe = rc, info.Kind == kindPipe
	e.Wake, e.Reset = nil, nil
	e.Pacer, e.Meter, e.Gate = nil, nil, nil
	e.Info = splice.Info{Mode: info.Mode, Flags: info.Flags, Family: info.Family}
	e.kind, e.size, e.dev = info.Kind, info.Size, info.Dev
}

// readerEndpoint reports whether the kernel can splice from r, and how:
// r must expose its descriptor (*PipeReader, *os.File, *net.TCPConn,
// *net.UnixConn, any syscall.Conn) and be a regular file, pipe, fifo,
// stream socket or device. *io.LimitedReader is unwrapped by the caller.
func readerEndpoint(r io.Reader) (e endpoint, ok bool) {
	ok = fdEndpoint(r, false, &e)
	return e, ok
}

// writerEndpoint is readerEndpoint for the destination side.
func writerEndpoint(w io.Writer) (e endpoint, ok bool) {
	ok = fdEndpoint(w, true, &e)
	return e, ok
}

// fdEndpoint classifies v into e, and reports whether the kernel can
// splice it (e is left unspecified where not). The types whose kind Go
// fixes are classified without a system call: *PipeReader and
// *PipeWriter (non-blocking pipes), *net.TCPConn and stream
// *net.UnixConn (non-blocking stream sockets). Others cost an fstat(2),
// plus fcntl(F_GETFL) where the status flags matter (a destination's
// O_APPEND, a pipe's or socket's O_NONBLOCK).
func fdEndpoint(v any, write bool, e *endpoint) bool {
	var sc syscall.Conn
	switch x := v.(type) {
	case *PipeReader:
		if x == nil || x.f == nil {
			return false
		}
		return knownEndpoint(x.file(), fd.NonblockPipe, e)
	case *PipeWriter:
		if x == nil || x.f == nil {
			return false
		}
		return knownEndpoint(x.file(), fd.NonblockPipe, e)
	case *net.TCPConn, *net.UnixConn:
		if goStreamSocket(v, e) {
			return true
		}
		if x, ok := v.(*net.UnixConn); ok && x != nil {
			sc = x // a datagram or seqpacket socket: classify says
		} else {
			return false
		}
	case *os.File:
		if x == nil {
			return false
		}
		sc = x
	case syscall.Conn:
		sc = x
	default:
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil || rc == nil {
		return false
	}
	return classify(rc, write, e)
}

// goStreamSocket makes e the endpoint of v if v is one of Go's stream
// sockets, known without a system call: a non-nil *net.TCPConn, or a
// *net.UnixConn of network "unix" (SOCK_STREAM).
func goStreamSocket(v any, e *endpoint) bool {
	switch x := v.(type) {
	case *net.TCPConn:
		if x != nil {
			return knownEndpoint(x, fd.NonblockSocket, e)
		}
	case *net.UnixConn:
		if x == nil {
			break
		}
		if a := x.LocalAddr(); a != nil && a.Network() == "unix" {
			return knownEndpoint(x, fd.NonblockUnixSocket, e)
		}
	}
	return false
}

// knownEndpoint makes e the endpoint of a Go descriptor whose Info Go
// fixes: a stream socket or a pipe, O_NONBLOCK, on the netpoller.
func knownEndpoint(sc syscall.Conn, info fd.Info, e *endpoint) bool {
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	e.set(rc, info)
	return true
}

// classify asks internal/fd what the descriptor behind rc is, and makes
// e its endpoint. A source's status flags matter only where it can wait;
// a destination's always (O_APPEND). Datagram, seqpacket and listening
// sockets, directories and symlinks are not spliceable as streams.
func classify(rc syscall.RawConn, write bool, e *endpoint) bool {
	need := fd.Stream | fd.FlagsIfWaits
	if write {
		need = fd.Stream | fd.Flags
	}
	info, err := fd.Inspect(rc, need)
	if err != nil || info.Kind == fd.KindNone {
		return false
	}
	e.set(rc, info)
	return true
}

// pipeEndpoint is the endpoint of a PipeReader or PipeWriter: a pipe or
// fifo, O_NONBLOCK, known without asking the kernel (a fifo opened by
// AsyncOpenFifo is made non-blocking by os.OpenFile).
func pipeEndpoint(f *os.File) (e endpoint, ok bool) {
	ok = knownEndpoint(f, fd.NonblockPipe, &e)
	return e, ok
}

func (r *PipeReader) endpoint() (endpoint, bool) { return pipeEndpoint(r.file()) }

func (w *PipeWriter) endpoint() (endpoint, bool) { return pipeEndpoint(w.file()) }

// socketError reads and clears the error pending on v's socket
// (fd.SocketError): nil when v has no descriptor, is not a socket, or
// has no error pending.
func socketError(v any) error {
	rc, ok := rawConnOf(v)
	if !ok {
		return nil
	}
	return fd.SocketError(rc)
}

// tcpAborted reports whether v is a TCP socket closed by a reset or a
// timeout, not shut down for writing (fd.TCPAborted): false when v has
// no descriptor or is not a TCP socket. An end that hides its
// descriptor but gives the connection it reads (a *tls.Conn's NetConn)
// is looked at through that connection: its Read reports that
// connection's EOF as its own, also the EOF a reset leaves once a write
// has taken the reset.
func tcpAborted(v any) bool {
	if _, ok := v.(syscall.Conn); !ok {
		if nc, ok := v.(interface{ NetConn() net.Conn }); ok {
			v = nc.NetConn()
		}
	}
	rc, ok := rawConnOf(v)
	return ok && fd.TCPAborted(rc)
}

// fileAtEOF reports, where v is a regular file (file), whether its
// offset is at or past its end, by a one-byte pread(2) there, which
// moves no offset. file is false where v has no descriptor, is not a
// regular file, or the pread fails (a file not open for reading).
func fileAtEOF(v any) (eof, file bool) {
	rc, ok := rawConnOf(v)
	if !ok {
		return false, false
	}
	rc.Control(func(s uintptr) {
		var st unix.Stat_t
		if unix.Fstat(int(s), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			return
		}
		off, err := unix.Seek(int(s), 0, io.SeekCurrent)
		if err != nil {
			return
		}
		var b [1]byte
		for {
			n, err := unix.Pread(int(s), b[:], off)
			if err == unix.EINTR {
				continue
			}
			eof, file = n == 0, err == nil
			return
		}
	})
	return eof, file
}

// rawConnOf is v's RawConn, if v has a descriptor.
func rawConnOf(v any) (syscall.RawConn, bool) {
	sc, ok := v.(syscall.Conn)
	if !ok {
		return nil, false
	}
	rc, err := sc.SyscallConn()
	return rc, err == nil && rc != nil
}

// sameFile reports whether a and b both have descriptors (syscall.Conn)
// of one socket, pipe or regular file, fstat's device and inode telling,
// and which of the three that is. Devices are not compared: distinct
// terminals opened from /dev/ptmx share its inode. Two sockets of one
// inode number are compared by their SO_COOKIE too: the kernel numbers
// sockets and pipes from a 32-bit counter, which wraps in a process that
// runs long enough. It costs an fstat(2) per end, except for Go's own
// sockets that distinctGoSockets tells apart.
func sameFile(a, b any) (kind string, same bool) {
	if distinctGoSockets(a, b) {
		return "", false
	}
	ia, ok := statOf(a)
	if !ok {
		return "", false
	}
	ib, ok := statOf(b)
	if !ok || ia.Dev != ib.Dev || ia.Ino != ib.Ino || ia.Mode != ib.Mode {
		return "", false
	}
	switch ia.Mode {
	case syscall.S_IFSOCK:
		if ca, ok := cookieOf(a); ok {
			if cb, ok := cookieOf(b); ok && ca != cb {
				return "", false // a number the counter gave twice
			}
		}
		return "socket", true
	case syscall.S_IFIFO:
		return "pipe", true
	case syscall.S_IFREG:
		return "file", true
	}
	return "", false
}

// distinctGoSockets reports, without a system call, that a and b are not
// one socket: a TCP and a unix connection (Go makes a *net.TCPConn or a
// *net.UnixConn from the socket's family), or two TCP connections whose
// addresses differ (tcpConnsDiffer). False means they may be one.
func distinctGoSockets(a, b any) bool {
	switch x := a.(type) {
	case *net.TCPConn:
		switch y := b.(type) {
		case *net.UnixConn:
			return true
		case *net.TCPConn:
			return tcpConnsDiffer(x, y)
		}
	case *net.UnixConn:
		_, tcp := b.(*net.TCPConn)
		return tcp
	}
	return false
}

// tcpConnsDiffer reports whether x and y, both connected when they were
// made, have different local or remote addresses. Go keeps both
// addresses as the kernel gave them then, and a connected socket's do
// not change; a value made before its socket connected has no remote
// address, and a local one that may have changed since: it tells nothing.
func tcpConnsDiffer(x, y *net.TCPConn) bool {
	lx, rx, ok := tcpAddrs(x)
	if !ok {
		return false
	}
	ly, ry, ok := tcpAddrs(y)
	if !ok {
		return false
	}
	return !sameTCPAddr(rx, ry) || !sameTCPAddr(lx, ly)
}

// tcpAddrs is c's local and remote address, if Go knows both.
func tcpAddrs(c *net.TCPConn) (local, remote *net.TCPAddr, ok bool) {
	local, _ = c.LocalAddr().(*net.TCPAddr)
	remote, _ = c.RemoteAddr().(*net.TCPAddr)
	return local, remote, local != nil && remote != nil
}

func sameTCPAddr(a, b *net.TCPAddr) bool {
	return a.Port == b.Port && a.IP.Equal(b.IP) && a.Zone == b.Zone
}

// statOf is what fstat says of v's descriptor, if v has one.
func statOf(v any) (fd.Info, bool) {
	rc, ok := rawConnOf(v)
	if !ok {
		return fd.Info{}, false
	}
	info, err := fd.Inspect(rc, 0)
	return info, err == nil
}

// cookieOf is the SO_COOKIE of v's socket, if the kernel gives it.
func cookieOf(v any) (uint64, bool) {
	rc, ok := rawConnOf(v)
	if !ok {
		return 0, false
	}
	return fd.SocketCookie(rc)
}
