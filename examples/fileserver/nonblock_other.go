//go:build !unix

package main

import "os"

// openNonblock opens name under root for reading: there are no fifos to
// wait for here.
func openNonblock(root *os.Root, name string) (*os.File, error) {
	return root.Open(name)
}

// setBlocking does nothing: openNonblock opened f blocking.
func setBlocking(f *os.File) error { return nil }
