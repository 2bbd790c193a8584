package pipes

import (
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// PipeReader is the read end of an OS pipe or fifo, as returned by New,
// Open, Create and OpenFifo. It wraps an *os.File in non-blocking mode, so
// reads wait on the Go netpoller, deadlines work, and Close from another
// goroutine ends a blocked Read. Its WriteTo moves bytes inside the kernel
// (splice(2), Linux) when the destination has a file descriptor. The
// methods of a nil *PipeReader (or *PipeWriter) fail with os.ErrInvalid,
// as those of a nil *os.File do.
type PipeReader struct {
	f *os.File
	// awaitWriter: a fifo opened read-only without blocking, whose first
	// writer may not have connected yet; until one has, the kernel's
	// "no writer" EOF means "wait".
	awaitWriter atomic.Bool
}

// PipeWriter is the write end of an OS pipe or fifo, as returned by New,
// Create and OpenFifo; see PipeReader. Its ReadFrom moves bytes inside the
// kernel (splice(2), Linux) when the source has a file descriptor.
type PipeWriter struct {
	f *os.File
}

// file returns the end's *os.File: nil for a nil *PipeReader, whose
// methods then fail with os.ErrInvalid as a nil *os.File's do.
func (r *PipeReader) file() *os.File {
	if r == nil {
		return nil
	}
	return r.f
}

// file returns the end's *os.File: nil for a nil *PipeWriter (see
// (*PipeReader).file).
func (w *PipeWriter) file() *os.File {
	if w == nil {
		return nil
	}
	return w.f
}

// Read reads from the pipe, as (*os.File).Read: it waits for data, and
// returns io.EOF once every write end is closed and the pipe is empty.
func (r *PipeReader) Read(p []byte) (int, error) {
	if r != nil && r.awaitWriter.Load() {
		return r.readFifo(p)
	}
	return r.file().Read(p)
}

// Close closes the read end. A Read or WriteTo blocked on it returns an
// error. Closing it twice returns an error wrapping os.ErrClosed.
func (r *PipeReader) Close() error {
	return r.file().Close()
}

// SyscallConn returns a raw connection to the read end's descriptor.
func (r *PipeReader) SyscallConn() (syscall.RawConn, error) {
	return r.file().SyscallConn()
}

// SetReadDeadline sets the deadline for Read and WriteTo, as
// (*os.File).SetReadDeadline; a zero time means none.
func (r *PipeReader) SetReadDeadline(t time.Time) error {
	return r.file().SetReadDeadline(t)
}

// SetDeadline is SetReadDeadline: a read end has no writes.
func (r *PipeReader) SetDeadline(t time.Time) error {
	return r.file().SetReadDeadline(t)
}

// Write writes to the pipe, as (*os.File).Write: it waits for room, and
// fails with an error wrapping syscall.EPIPE once every read end is
// closed (Go ignores SIGPIPE for descriptors other than stdout/stderr).
func (w *PipeWriter) Write(p []byte) (int, error) {
	return w.file().Write(p)
}

// Close closes the write end; readers see EOF once every write end is
// closed. A Write blocked on it, or a ReadFrom blocked writing to it,
// returns an error; a ReadFrom waiting for input from its source waits
// on, until the source has some, as (*os.File).ReadFrom does. Closing it
// twice returns an error wrapping os.ErrClosed.
func (w *PipeWriter) Close() error {
	return w.file().Close()
}

// SyscallConn returns a raw connection to the write end's descriptor.
func (w *PipeWriter) SyscallConn() (syscall.RawConn, error) {
	return w.file().SyscallConn()
}

// SetWriteDeadline sets the deadline for Write and ReadFrom, as
// (*os.File).SetWriteDeadline; a zero time means none.
func (w *PipeWriter) SetWriteDeadline(t time.Time) error {
	return w.file().SetWriteDeadline(t)
}

// SetDeadline is SetWriteDeadline: a write end has no reads.
func (w *PipeWriter) SetDeadline(t time.Time) error {
	return w.file().SetWriteDeadline(t)
}
