// Package accept holds what the example servers' accept loops share: the
// wait after an Accept that failed for want of descriptors or memory, and
// a listener that fails so, for their tests.
package accept

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// Backoff paces the retries of an accept loop, as net/http's
// Server.Serve does: the first pause is 5 ms, each next one twice the
// last, up to a second. The zero value is ready to use.
type Backoff struct {
	pause time.Duration
}

// Retry reports whether an Accept that failed with err may succeed later:
// the process or the system ran out of descriptors (EMFILE, ENFILE: what
// clients that hold many connections open cause) or memory (ENOBUFS,
// ENOMEM). If so it first waits for the next pause, or until done is
// closed; the caller then calls Accept again, which fails for good if the
// listener was closed meanwhile.
func (b *Backoff) Retry(err error, done <-chan struct{}) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) ||
		!(errno.Temporary() || errno == syscall.ENOBUFS || errno == syscall.ENOMEM) {
		return false
	}
	b.pause = min(max(2*b.pause, 5*time.Millisecond), time.Second)
	t := time.NewTimer(b.pause)
	defer t.Stop()
	select {
	case <-t.C:
	case <-done:
	}
	return true
}

// Reset starts the pauses again from the first: the caller calls it after
// each Accept that succeeded.
func (b *Backoff) Reset() { b.pause = 0 }

// FailingListener fails its first Fail Accepts with Err, as accept(2)
// fails once the process is out of descriptors (EMFILE) or the system is
// (ENFILE), then accepts from the Listener it wraps.
type FailingListener struct {
	net.Listener
	Fail atomic.Int32
	Err  syscall.Errno
}

// ListenFailing listens on a loopback TCP port and returns a listener
// whose first n Accepts fail with err (for the servers' tests).
func ListenFailing(err syscall.Errno, n int32) (*FailingListener, error) {
	inner, lerr := net.Listen("tcp", "127.0.0.1:0")
	if lerr != nil {
		return nil, lerr
	}
	l := &FailingListener{Listener: inner, Err: err}
	l.Fail.Store(n)
	return l, nil
}

// Accept fails with Err while Fail is above zero, lowering it, and
// accepts from the wrapped Listener after.
func (l *FailingListener) Accept() (net.Conn, error) {
	if l.Fail.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", l.Err)}
	}
	return l.Listener.Accept()
}
