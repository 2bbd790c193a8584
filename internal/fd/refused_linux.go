package fd

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Refused reports the errors by which the kernel refuses to splice (or
// sendfile, or tee) a pair of descriptors before moving anything:
// EINVAL, ENOSYS, EOPNOTSUPP (a file system or device without splice
// support, an O_APPEND destination). err may be a bare syscall.Errno or
// wrap one (errors.Is).
func Refused(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP)
}
