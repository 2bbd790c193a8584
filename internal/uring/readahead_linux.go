package uring

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// readahead returns the readahead of the block device dev (a file's
// st_dev) in bytes, as sysfs gives it: the device's
// queue/read_ahead_kb, or its disk's for a partition, which is what a
// file opened on it reads ahead by. ok is false where it cannot tell: a
// file system on no block device of its own (tmpfs, overlayfs, btrfs's
// anonymous devices), or no sysfs.
func readahead(dev uint64) (n int, ok bool) {
	base := fmt.Sprintf("/sys/dev/block/%d:%d/", unix.Major(dev), unix.Minor(dev))
	for _, p := range []string{base + "queue/read_ahead_kb", base + "../queue/read_ahead_kb"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		kb, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || kb < 0 {
			return 0, false
		}
		return kb << 10, true
	}
	return 0, false
}

// markStep returns the distance between the pages a Warmer's chains
// read within a chunk for a file on the device dev (stepFor its
// readahead). The kernel reads a file ahead in windows of its device's
// readahead, each with its mark on its first page (startChunk); the
// copy's own sendfile(2) must not be what meets the marks, nor what
// waits for a window still being read. The answer is kept per device:
// sysfs is read once.
func (d *Driver) markStep(dev uint64) int {
	d.stepMu.Lock()
	defer d.stepMu.Unlock()
	if s, ok := d.steps[dev]; ok {
		return s
	}
	ra, known := readahead(dev)
	s := stepFor(ra, known, len(d.guard))
	if d.steps == nil {
		d.steps = make(map[uint64]int)
	}
	d.steps[dev] = s
	return s
}

// stepFor is the step for a device that reads ahead ra bytes (known:
// sysfs told) and chunks of at most guard bytes: the readahead where it
// is under a guard, but at least minStep, in whole pages; else, or where
// the readahead is unknown or off, a guard.
func stepFor(ra int, known bool, guard int) int {
	page := os.Getpagesize()
	if !known || ra < page || ra >= guard {
		return guard
	}
	return min(max(ra, minStep), guard) &^ (page - 1)
}

// minStep is the least step: on a device that reads ahead less (4 to
// 64 KiB), the copy's sendfile(2) meets the marks between the chain's
// pages, which costs less than chains of five READs at each window: at
// read_ahead_kb 16, about half the CPU per GiB and a sixth to two fifths
// of the system calls of a step of one window, with the same bound on
// threads (docs/benchmarks.md, "Devices that read ahead less than 128
// KiB").
const minStep = 128 << 10
