// Package fdtest holds test helpers: checks for leaked file descriptors
// and goroutines, socket pairs and temporary files.
package fdtest

import (
	"os"
	"strings"
	"testing"
	"time"
)

// Open returns the open file descriptors of this process mapped to what
// they point at (the /proc/self/fd link targets). It returns nil where
// /proc/self/fd cannot be read.
func Open() map[string]string {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return nil
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil
	}
	fds := make(map[string]string, len(names))
	for _, n := range names {
		target, err := os.Readlink("/proc/self/fd/" + n)
		if err != nil {
			continue // the directory's own fd, closed by now
		}
		fds[n] = target
	}
	return fds
}

// Check records the open descriptors now and, when the test ends, fails it
// if descriptors opened since are still open. Descriptors closed by
// finalizers or by goroutines still finishing are given up to two seconds.
// Where /proc is unavailable Check does nothing.
func Check(tb testing.TB) {
	tb.Helper()
	before := Open()
	if before == nil {
		return
	}
	tb.Cleanup(func() {
		var leaked []string
		deadline := time.Now().Add(2 * time.Second)
		for {
			leaked = leaked[:0]
			for fd, target := range Open() {
				if prev, ok := before[fd]; ok && prev == target {
					continue
				}
				leaked = append(leaked, fd+" -> "+target)
			}
			if len(leaked) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(leaked) > 0 {
			tb.Errorf("leaked %d file descriptors: %s", len(leaked), strings.Join(leaked, ", "))
		}
	})
}
