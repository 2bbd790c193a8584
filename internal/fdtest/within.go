package fdtest

import (
	"runtime"
	"testing"
	"time"
)

// Within runs f and fails t, with every goroutine's stack, if f has not
// returned after d: a guard against a hang, not a timing assertion (d is
// many times what f needs).
func Within(t testing.TB, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Fatalf("timed out after %v\n%s", d, buf[:n])
	}
}
