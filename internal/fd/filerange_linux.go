package fd

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// CopyableFiles reports whether copy_file_range(2) takes src and dst,
// asked with a copy of no bytes: the kernel answers it with 0 only where
// both are regular files, src open for reading and dst for writing
// without O_APPEND, on file systems that copy between each other, and
// with EINVAL, EISDIR, EBADF or EXDEV otherwise, checked before it looks
// at the length. Nothing moves, and neither offset. One system call
// tells what fstat(2) of each and fcntl(F_GETFL) of dst would. It is
// false where either RawConn fails (a closed file). (Two pidfds pass
// too: the kernel makes them regular files inside, though fstat(2)
// gives them no type; io.Copy then fails on them as it would anyway.)
func CopyableFiles(src, dst syscall.RawConn) bool {
	p := filePair{dst: dst}
	if err := src.Control(p.withSrc); err != nil {
		return false
	}
	return p.ok
}

// filePair is CopyableFiles' Control callbacks and their result.
type filePair struct {
	dst   syscall.RawConn
	srcFd int
	ok    bool
}

func (p *filePair) withSrc(sfd uintptr) {
	p.srcFd = int(sfd)
	p.dst.Control(p.withDst) // a failed Control leaves ok false
}

func (p *filePair) withDst(dfd uintptr) {
	n, err := unix.CopyFileRange(p.srcFd, nil, int(dfd), nil, 0, 0)
	p.ok = n == 0 && err == nil
}
