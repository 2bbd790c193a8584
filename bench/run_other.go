//go:build !linux

package main

import (
	"errors"
	"runtime"
)

// run reports that the benchmark needs Linux: splice(2), io_uring,
// perf_event_open and /proc are what it measures with.
func run(*config) error {
	return errors.New("the pipes benchmark runs on Linux only (this is " + runtime.GOOS + ")")
}
