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
// read within a chunk for a file on the device dev: its readahead, where
// that is under a guard, rounded down to whole pages, else (or where
// the readahead is unknown or off) a guard. The kernel reads a file
// ahead in windows of its device's readahead, each with its mark on its
// first page (startChunk); the copy's own sendfile(2) must not be what
// meets the marks, nor what waits for a window still being read. The
// answer is kept per device: sysfs is read once.
func (d *Driver) markStep(dev uint64) int {
	d.stepMu.Lock()
	defer d.stepMu.Unlock()
	if s, ok := d.steps[dev]; ok {
		return s
	}
	s := len(d.guard)
	page := os.Getpagesize()
	if ra, ok := readahead(dev); ok && ra >= page && ra < s {
		s = ra &^ (page - 1)
	}
	if d.steps == nil {
		d.steps = make(map[uint64]int)
	}
	d.steps[dev] = s
	return s
}
