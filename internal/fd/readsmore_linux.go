package fd

import (
	"io"

	"golang.org/x/sys/unix"
)

// ReadsMore reports, for a regular file fd that splice(2) or sendfile(2)
// found at its end (they answered 0), whether read(2) finds a byte at its
// offset all the same, by pread(2) of a byte, which moves no offset.
// splice(2) reads a file through the page cache, up to the file's size;
// a file whose size is reported as 0 while its reads return bytes (a
// FUSE file of direct I/O, such as the /proc files lxcfs serves in
// containers) splices as empty. A file with no byte at offset 0 (the
// usual empty file) is answered by that one pread(2); one with bytes
// there costs an lseek(2) and a pread(2) at the offset more. A regular
// file that cannot seek (ESPIPE: a FUSE file opened FOPEN_NONSEEKABLE or
// FOPEN_STREAM) cannot be asked without taking its byte: it reports
// true, at the cost of an fstat(2), so that read(2) itself tells, in
// userspace, as io.Copy reads it. Any other error (a file not open for
// reading, an O_DIRECT file's unaligned read) reports false.
func ReadsMore(fd int) bool {
	switch ok, err := preadsByte(fd, 0); {
	case err == unix.ESPIPE:
		return regular(fd)
	case !ok:
		return false
	}
	off, err := unix.Seek(fd, 0, io.SeekCurrent)
	if err != nil {
		return false
	}
	if off == 0 {
		return true
	}
	ok, _ := preadsByte(fd, off)
	return ok
}

// preadsByte reports whether pread(2) of a byte at off of fd returns it,
// and its error.
func preadsByte(fd int, off int64) (bool, error) {
	var b [1]byte
	for {
		n, err := unix.Pread(fd, b[:], off)
		if err != unix.EINTR {
			return n > 0, err
		}
	}
}

// regular reports whether fd is a regular file (fstat(2)).
func regular(fd int) bool {
	var st unix.Stat_t
	return unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG
}
