//go:build linux

package fd

import (
	"time"

	"golang.org/x/sys/unix"
)

// PollSlice is how long a wait on a descriptor in blocking mode sleeps
// in Poll at a time before its caller checks again whether the wait
// should end (a cancel, a Close, a deadline).
const PollSlice = 50 * time.Millisecond

// Poll waits up to timeout (0: not at all) for events on the descriptor
// fd with poll(2), for a descriptor in blocking mode, which the netpoller
// does not watch. It reports readiness, error and hang-up alike (the
// next read or write reports those); false on a timeout, EINTR or a
// failure of poll itself, which the caller treats as "not yet".
func Poll(fd int, events int16, timeout time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
	n, err := unix.Poll(fds, int(timeout/time.Millisecond))
	return err == nil && n > 0 && fds[0].Revents != 0
}
