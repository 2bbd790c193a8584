package accept

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestRetry: the errors of a process or system out of descriptors or
// memory are retried, others not; a closed done ends the pause.
func TestRetry(t *testing.T) {
	done := make(chan struct{})
	close(done) // no test waits out a pause
	for _, c := range []struct {
		err   error
		retry bool
	}{
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}, true},
		{os.NewSyscallError("accept4", syscall.ENFILE), true},
		{syscall.ENOBUFS, true},
		{syscall.ENOMEM, true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EINVAL)}, false},
		{net.ErrClosed, false},
		{errors.New("other"), false},
	} {
		var b Backoff
		if got := b.Retry(c.err, done); got != c.retry {
			t.Errorf("Retry(%v) = %v, want %v", c.err, got, c.retry)
		}
	}
}

// TestBackoffPauses: the pauses double from 5 ms up to a second, and
// Reset starts them again.
func TestBackoffPauses(t *testing.T) {
	done := make(chan struct{})
	close(done)
	var b Backoff
	var got []time.Duration
	for range 10 {
		b.Retry(syscall.EMFILE, done)
		got = append(got, b.pause)
	}
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("pauses %v, want %v ms", got, want)
		}
	}
	b.Reset()
	b.Retry(syscall.EMFILE, done)
	if b.pause != 5*time.Millisecond {
		t.Fatalf("after Reset: pause %v, want 5ms", b.pause)
	}
}
