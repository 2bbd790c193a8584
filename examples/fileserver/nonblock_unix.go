//go:build unix

package main

import (
	"os"
	"syscall"
)

// openNonblock opens name under root for reading with O_NONBLOCK:
// open(2) of a fifo then returns at once, where it would wait for a
// writer.
func openNonblock(root *os.Root, name string) (*os.File, error) {
	return root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

// setBlocking clears O_NONBLOCK on f, a file not on the netpoller.
func setBlocking(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.SetNonblock(int(fd), false) }); err != nil {
		return err
	}
	return serr
}
