//go:build !pipes_portable

package pipes

import (
	"context"
	"io"
	"os"

	"github.com/pipes-go/pipes/splice"
	"golang.org/x/sys/unix"
)

// New creates a pipe (pipe2(2) with O_NONBLOCK|O_CLOEXEC) and returns its
// read and write ends. Bytes written to w are read from r. Both ends are
// registered with the Go netpoller. It fails with an *os.SyscallError
// (EMFILE, ENFILE) when the process or system is out of descriptors.
func New() (*PipeReader, *PipeWriter, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	r := &PipeReader{f: os.NewFile(uintptr(fds[0]), "|0")}
	w := &PipeWriter{f: os.NewFile(uintptr(fds[1]), "|1")}
	return r, w, nil
}

// ReadFrom and WriteTo need no pipe pool: the pipe itself is one side of
// their copies, so splice.Copy splices directly (a nil pool would make a
// pipe for the copy only if neither side were a pipe).

// ReadFrom copies from src into the pipe until EOF on src or an error, and
// returns the number of bytes copied, as io.ReaderFrom. When src has a
// file descriptor the kernel can splice (a regular file, pipe, fifo, TCP or
// unix stream socket, device; also inside an *io.LimitedReader) the bytes
// move with splice(2) and never enter the process; otherwise ReadFrom
// copies through a userspace buffer. An *io.LimitedReader is honoured: at
// most N bytes are copied and N is decreased by the bytes taken from src
// (those copied, and those read and not delivered when the copy fails:
// see splice.UndeliveredError), as io.Copy decreases it. A
// regular-file src is read from its current offset, which advances. A
// read-only fifo src (a *PipeReader from Open or OpenFifo) that has had
// no writer yet is waited for, as its Read waits. Errors wrap the errno
// (errors.Is(err, syscall.EPIPE) once the read end is closed).
func (w *PipeWriter) ReadFrom(src io.Reader) (int64, error) {
	if w == nil {
		return 0, os.ErrInvalid // as a nil *os.File's, before reading src
	}
	limit := int64(-1)
	inner := src
	lr, limited := src.(*io.LimitedReader)
	if limited {
		if lr.N <= 0 {
			return 0, nil
		}
		limit, inner = lr.N, lr.R
	}
	if pr, ok := inner.(*PipeReader); ok && pr != nil {
		// A read-only fifo that has had no writer yet reads as EOF
		// to splice(2): wait for its first writer, as its Read does.
		if err := pr.awaitFirstWriter(); err != nil {
			return 0, err
		}
	}
	if srcEnd, ok := spliceEnd(inner, false); ok {
		dst, _ := w.endpoint()
		n, handled, err := splice.Copy(context.Background(), &dst.End, &srcEnd, limit, nil)
		if handled {
			if limited {
				lr.N -= n + undelivered(err) // what was read, as io.Copy's
			}
			return n, err
		}
	}
	return io.Copy(struct{ io.Writer }{w}, src)
}

// WriteTo copies from the pipe into dst until EOF (every write end closed
// and the pipe empty) or an error, and returns the number of bytes copied,
// as io.WriterTo. When dst has a file descriptor the kernel can splice
// (a regular file not opened O_APPEND, pipe, fifo, TCP or unix stream
// socket, device such as /dev/null) the bytes move with splice(2);
// otherwise WriteTo copies through a userspace buffer. Errors wrap the
// errno (errors.Is(err, syscall.EPIPE), syscall.ECONNRESET).
func (r *PipeReader) WriteTo(dst io.Writer) (int64, error) {
	if r == nil {
		return 0, os.ErrInvalid
	}
	if err := r.awaitFirstWriter(); err != nil {
		return 0, err
	}
	if dstEnd, ok := spliceEnd(dst, true); ok {
		src, _ := r.endpoint()
		n, handled, err := splice.Copy(context.Background(), &dstEnd, &src.End, -1, nil)
		if handled {
			return n, err
		}
	}
	return io.Copy(dst, struct{ io.Reader }{r})
}

// spliceEnd returns the splice.End of the other side of ReadFrom or
// WriteTo. The pipe is one side, so splice.Copy splices directly, and
// refuses before moving anything what it cannot splice (an O_APPEND
// file, a directory, a blocking terminal as dst) or what the kernel
// refuses (EINVAL): an *os.File is passed unclassified, with no Info,
// and splice.Copy inspects it itself (fstat(2), fcntl(2)), as it does
// every side it is not told is a pipe. Other values are classified as
// for the engine. No Wake: nothing cancels ReadFrom or
// WriteTo but a Close, which needs none.
func spliceEnd(v any, write bool) (splice.End, bool) {
	if f, ok := v.(*os.File); ok {
		if f == nil {
			return splice.End{}, false
		}
		rc, err := f.SyscallConn()
		if err != nil {
			return splice.End{}, false
		}
		return splice.End{Conn: rc}, true
	}
	var e endpoint
	if !fdEndpoint(v, write, &e) {
		return splice.End{}, false
	}
	return e.End, true
}
