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
// there costs an lseek(2) and a pread(2) at the offset more. Any error
// (a file not open for reading, an O_DIRECT file's unaligned read, a
// file that cannot seek) reports false.
func ReadsMore(fd int) bool {
	if !preadsByte(fd, 0) {
		return false
	}
	off, err := unix.Seek(fd, 0, io.SeekCurrent)
	if err != nil {
		return false
	}
	return off == 0 || preadsByte(fd, off)
}

// preadsByte reports whether pread(2) of a byte at off of fd returns it.
func preadsByte(fd int, off int64) bool {
	var b [1]byte
	for {
		n, err := unix.Pread(fd, b[:], off)
		if err != unix.EINTR {
			return n > 0
		}
	}
}
