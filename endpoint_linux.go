package pipes

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/pipes-go/pipes/splice"
	"golang.org/x/sys/unix"
)

// fdKind is what kind of file an endpoint's descriptor is, as fstat tells.
type fdKind uint8

const (
	kindOther  fdKind = iota // character or block device: /dev/null, /dev/zero, ...
	kindFile                 // regular file: has an offset, never waits
	kindPipe                 // pipe or fifo: spliced directly
	kindSocket               // stream socket: TCP, unix SOCK_STREAM
)

func (k fdKind) String() string {
	switch k {
	case kindFile:
		return "file"
	case kindPipe:
		return "pipe"
	case kindSocket:
		return "socket"
	}
	return "other"
}

// endpoint describes an io.Reader or io.Writer the kernel can splice: its
// RawConn, its kind, and how to wake a copy blocked on it.
type endpoint struct {
	conn syscall.RawConn
	kind fdKind
	// wake makes a wait on conn return: it sets the read (reader
	// endpoint) or write (writer endpoint) deadline in the past. nil
	// where the value has no deadline setter.
	wake func()
	// reset clears the deadline wake set. A cancelled copy calls it
	// before returning: the value is then left with no deadline, even if
	// its owner had set one before the copy.
	reset func()
	info  splice.Info // file type and status flags, read once
	size  int64       // kindFile: the size fstat reported
	// meter, on a destination, counts the bytes delivered to it as
	// they move; nil: not counted.
	meter *meter
	// pacer, on a source, limits the rate it is read at; nil: none.
	pacer *Limiter
}

// end returns the endpoint as a splice.End.
func (e endpoint) end() splice.End {
	end := splice.End{Conn: e.conn, Pipe: e.kind == kindPipe, Wake: e.wake, Reset: e.reset, Info: e.info}
	if e.meter != nil {
		end.Meter = e.meter
	}
	if e.pacer != nil {
		end.Pacer = e.pacer
	}
	return end
}

// readerEndpoint reports whether the kernel can splice from r, and how:
// r must expose its descriptor (*PipeReader, *os.File, *net.TCPConn,
// *net.UnixConn, any syscall.Conn) and be a regular file, pipe, fifo,
// stream socket or device. *io.LimitedReader is unwrapped by the caller.
func readerEndpoint(r io.Reader) (endpoint, bool) {
	e, ok := fdEndpoint(r, false)
	if !ok {
		return e, false
	}
	if d, ok := r.(interface{ SetReadDeadline(time.Time) error }); ok {
		e.wake = func() { d.SetReadDeadline(aLongTimeAgo) }
		e.reset = func() { d.SetReadDeadline(time.Time{}) }
	}
	return e, true
}

// writerEndpoint is readerEndpoint for the destination side.
func writerEndpoint(w io.Writer) (endpoint, bool) {
	e, ok := fdEndpoint(w, true)
	if !ok {
		return e, false
	}
	if d, ok := w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		e.wake = func() { d.SetWriteDeadline(aLongTimeAgo) }
		e.reset = func() { d.SetWriteDeadline(time.Time{}) }
	}
	return e, true
}

// fdEndpoint classifies v. The types whose kind Go fixes are classified
// without a system call: *PipeReader and *PipeWriter (non-blocking pipes),
// *net.TCPConn and stream *net.UnixConn (non-blocking stream sockets).
// Others cost an fstat(2), plus fcntl(F_GETFL) where the status flags
// matter (a destination's O_APPEND, a pipe's or socket's O_NONBLOCK).
func fdEndpoint(v any, write bool) (endpoint, bool) {
	var sc syscall.Conn
	switch x := v.(type) {
	case *PipeReader:
		if x == nil || x.f == nil {
			return endpoint{}, false
		}
		return x.endpoint()
	case *PipeWriter:
		if x == nil || x.f == nil {
			return endpoint{}, false
		}
		return x.endpoint()
	case *net.TCPConn:
		if x == nil {
			return endpoint{}, false
		}
		return socketEndpoint(x)
	case *net.UnixConn:
		if x == nil {
			return endpoint{}, false
		}
		if a := x.LocalAddr(); a != nil && a.Network() == "unix" {
			return socketEndpoint(x)
		}
		sc = x
	case *os.File:
		if x == nil {
			return endpoint{}, false
		}
		sc = x
	case syscall.Conn:
		sc = x
	default:
		return endpoint{}, false
	}
	rc, err := sc.SyscallConn()
	if err != nil || rc == nil {
		return endpoint{}, false
	}
	return classify(rc, write)
}

// socketEndpoint is the endpoint of a Go stream socket: always
// O_NONBLOCK, on the netpoller.
func socketEndpoint(sc syscall.Conn) (endpoint, bool) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return endpoint{}, false
	}
	return endpoint{conn: rc, kind: kindSocket, info: splice.Info{Mode: unix.S_IFSOCK, Flags: unix.O_NONBLOCK}}, true
}

// classify fstats the descriptor behind rc and reads its status flags
// where they matter. Datagram, seqpacket and listening sockets,
// directories and symlinks are not spliceable as streams.
func classify(rc syscall.RawConn, write bool) (e endpoint, ok bool) {
	cerr := rc.Control(func(fd uintptr) {
		var st unix.Stat_t
		if unix.Fstat(int(fd), &st) != nil {
			return
		}
		e.info.Mode = st.Mode & unix.S_IFMT
		switch e.info.Mode {
		case unix.S_IFREG:
			e.kind = kindFile
			e.size = st.Size
			if !write {
				// A file source never waits and has no O_APPEND to honour.
				ok = true
				return
			}
		case unix.S_IFIFO:
			e.kind = kindPipe
		case unix.S_IFCHR, unix.S_IFBLK:
			e.kind = kindOther
		case unix.S_IFSOCK:
			typ, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
			if err != nil || typ != unix.SOCK_STREAM {
				return
			}
			// A listening socket never becomes readable or writable
			// for splice: the copy would wait forever. In userspace it
			// fails at once, as io.Copy does (read: ENOTCONN; write,
			// once there is something to write: EPIPE).
			if l, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || l != 0 {
				return
			}
			e.kind = kindSocket
		default:
			return
		}
		fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		if err != nil {
			return
		}
		e.info.Flags = fl
		ok = true
	})
	if cerr != nil || !ok {
		return endpoint{}, false
	}
	e.conn = rc
	return e, true
}

// pipeEndpoint is the endpoint of a PipeReader or PipeWriter: a pipe or
// fifo, O_NONBLOCK, known without asking the kernel (a fifo opened by
// AsyncOpenFifo is made non-blocking by os.OpenFile).
func pipeEndpoint(f *os.File) (endpoint, bool) {
	rc, err := f.SyscallConn()
	if err != nil {
		return endpoint{}, false
	}
	return endpoint{conn: rc, kind: kindPipe, info: splice.Info{Mode: unix.S_IFIFO, Flags: unix.O_NONBLOCK}}, true
}

func (r *PipeReader) endpoint() (endpoint, bool) { return pipeEndpoint(r.f) }

func (w *PipeWriter) endpoint() (endpoint, bool) { return pipeEndpoint(w.f) }
