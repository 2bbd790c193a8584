//go:build linux

package pipes

import (
	"os"

	"golang.org/x/sys/unix"
)

// namedFifo reports whether f is a named fifo, whose blocking open(2)
// for writing waits for a reader, and not an anonymous pipe opened by
// its /proc path (/dev/stdout of a command piped into one), whose open
// never waits: a loop that opens it again until it has a reader would
// spin (AsyncOpenFifo).
func namedFifo(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	named := false
	rc.Control(func(fd uintptr) {
		var st unix.Statfs_t
		named = unix.Fstatfs(int(fd), &st) == nil && st.Type != unix.PIPEFS_MAGIC
	})
	return named
}
