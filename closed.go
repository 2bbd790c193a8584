package pipes

import (
	"errors"
	"io"
	"net"
	"os"
)

// closedFileErr makes the error of a copy whose *os.File end (or the file
// of a *PipeReader or *PipeWriter) was closed during the copy match
// os.ErrClosed, as the error of the file's own Read or Write does, and
// io.Copy's, with the file's name: the file's RawConn reports
// internal/poll's "use of closed file", which only os.File's methods
// translate (package splice makes it match os.ErrClosed, with no name).
// A RawConn fails only once the file is closing, which is how a closed
// end is recognised. Errors of the kernel (*os.SyscallError) are kept as
// they are.
func closedFileErr(err error, dst io.Writer, src io.Reader) error {
	var serr *os.SyscallError
	if errors.Is(err, net.ErrClosed) || errors.As(err, &serr) {
		return err
	}
	if f := fileOf(src); f != nil && fileClosed(f) {
		return &os.PathError{Op: "read", Path: f.Name(), Err: os.ErrClosed}
	}
	if f := fileOf(dst); f != nil && fileClosed(f) {
		return &os.PathError{Op: "write", Path: f.Name(), Err: os.ErrClosed}
	}
	return err
}

// fileOf returns the *os.File behind v, if v is one or wraps one.
func fileOf(v any) *os.File {
	switch x := v.(type) {
	case *os.File:
		return x
	case *PipeReader:
		if x != nil {
			return x.f
		}
	case *PipeWriter:
		if x != nil {
			return x.f
		}
	}
	return nil
}

// fileClosed reports whether f has been closed.
func fileClosed(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return true
	}
	return rc.Control(func(uintptr) {}) != nil
}
