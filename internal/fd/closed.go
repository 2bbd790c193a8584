package fd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// ClosedErr makes err, met by a call on a or b (either may be nil) one of
// which was closed meanwhile, match os.ErrClosed, as the error of the
// file's own Read or Write (and io.Copy's) does: the RawConn of an
// *os.File reports internal/poll's "use of closed file", which only
// os.File's own methods translate (a net.Conn's reports net.ErrClosed
// already). A descriptor is closed where its RawConn refuses a Control.
// Errors of the kernel (*os.SyscallError) and those that match already
// are kept as they are. A wait the RawConn refused because its
// descriptor is not on the netpoller (notPolled) is made to match
// syscall.EAGAIN, as the file's own Read or Write fails there.
func ClosedErr(err error, a, b syscall.RawConn) error {
	if err == nil {
		return nil
	}
	var serr *os.SyscallError // after the nil check: &serr escapes, an allocation
	if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) || errors.As(err, &serr) {
		return err
	}
	for _, c := range [2]syscall.RawConn{a, b} {
		if c != nil && c.Control(func(uintptr) {}) != nil {
			return fmt.Errorf("%w (%w)", os.ErrClosed, err)
		}
	}
	if notPolled(err) && !errors.Is(err, syscall.EAGAIN) {
		return fmt.Errorf("%w (%w)", syscall.EAGAIN, err)
	}
	return err
}

// notPolledText is the text of the error internal/poll returns when a
// RawConn callback asks to wait (returns false) on a descriptor its
// netpoller does not watch: one in non-blocking mode that Go took for a
// blocking one (os.NewFile of a blocking descriptor whose file
// description was put in non-blocking mode later, by another descriptor
// of it such as net.FileConn's, or by another process). The file's own
// Read or Write returns EAGAIN there, and io.Copy with it.
const notPolledText = "waiting for unsupported file type"

// notPolled reports whether err is, or wraps, internal/poll's error for a
// wait on a descriptor its netpoller does not watch (notPolledText).
func notPolled(err error) bool {
	if err == nil {
		return false
	}
	if err.Error() == notPolledText {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return notPolled(u.Unwrap())
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if notPolled(e) {
				return true
			}
		}
	}
	return false
}
