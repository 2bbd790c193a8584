package fd

import (
	"io"

	"golang.org/x/sys/unix"
)

// ReadsMore reports, for a regular file fd that splice(2) or sendfile(2)
// found at its end (they answered 0), whether read(2) finds a byte at its
// offset all the same: ReadsMoreAt at the offset lseek(2) reports.
func ReadsMore(fd int) bool {
	off, err := unix.Seek(fd, 0, io.SeekCurrent)
	switch {
	case err == unix.ESPIPE:
		return regular(fd)
	case err != nil:
		return false
	}
	return ReadsMoreAt(fd, off)
}

// ReadsMoreAt reports, for a regular file fd at offset off that splice(2)
// or sendfile(2) found at its end, whether read(2) finds a byte there all
// the same, by pread(2) of a byte at off, which moves no offset.
// splice(2) reads a file through the page cache, up to the file's size;
// a file whose size is reported as 0 while its reads return bytes (a
// FUSE file of direct I/O, such as the /proc files lxcfs serves in
// containers) splices as empty. Only the offset is read: a read at
// offset 0 of such a file may have effects (lxcfs makes the file's
// contents anew for its descriptor then, and later reads continue in
// those), which a file read from further on must not see. A regular
// file that cannot seek (ESPIPE: a FUSE file opened FOPEN_NONSEEKABLE or
// FOPEN_STREAM) cannot be asked without taking its byte: it reports
// true, so that read(2) itself tells, in userspace, as io.Copy reads it.
// Any other error (a file not open for reading, an O_DIRECT file's
// unaligned read) reports false.
func ReadsMoreAt(fd int, off int64) bool {
	var b [1]byte
	for {
		n, err := unix.Pread(fd, b[:], off)
		switch err {
		case unix.EINTR:
			continue
		case unix.ESPIPE:
			return regular(fd)
		}
		return n > 0
	}
}

// regular reports whether fd is a regular file (fstat(2)).
func regular(fd int) bool {
	var st unix.Stat_t
	return unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG
}
