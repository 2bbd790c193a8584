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
// are kept as they are.
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
	return err
}
