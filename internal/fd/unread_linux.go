package fd

import (
	"errors"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrOffsetMoved reports bytes a copy read from a file and did not
// deliver that Unread could not put back: another reader of the file
// has moved its offset since.
var ErrOffsetMoved = errors.New("the file's offset moved past bytes read and not delivered")

// Unread moves the offset of the file behind c back over the n bytes
// that end at end, the last a copy read from it, under c's read lock (as
// read(2) of an *os.File holds it), where the offset is still end. Where
// it is not, another reader of the file has taken the bytes after them,
// and a seek back would have the next read deliver those again: Unread
// fails with ErrOffsetMoved and leaves the offset. end < 0 (not known)
// moves it back by n wherever it is. Errors are otherwise c's (a closed
// file) or an *os.SyscallError of lseek.
func Unread(c syscall.RawConn, end, n int64) error {
	var err error
	rerr := c.Read(func(sysfd uintptr) bool {
		cur, serr := unix.Seek(int(sysfd), 0, io.SeekCurrent)
		switch {
		case serr != nil:
		case end >= 0 && cur != end:
			err = ErrOffsetMoved
			return true
		default:
			_, serr = unix.Seek(int(sysfd), cur-n, io.SeekStart)
		}
		if serr != nil {
			err = os.NewSyscallError("lseek", serr)
		}
		return true
	})
	if rerr != nil {
		return rerr
	}
	return err
}
