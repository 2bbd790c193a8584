//go:build unix

package main

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// openNonblock opens name under root for reading with O_NONBLOCK:
// open(2) of a fifo then returns at once, where it would wait for a
// writer.
func openNonblock(root *os.Root, name string) (*os.File, error) {
	return root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

// setBlocking clears O_NONBLOCK on f, a file not on the netpoller,
// opened O_RDONLY by openNonblock: of the flags F_SETFL sets, O_NONBLOCK
// is the only one f has, so one call clears it (x/sys's SetNonblock
// makes two).
func setBlocking(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { _, serr = unix.FcntlInt(fd, unix.F_SETFL, 0) }); err != nil {
		return err
	}
	return serr
}
