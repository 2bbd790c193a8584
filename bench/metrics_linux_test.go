package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openCounterOrSkip opens the syscall counter; it skips only where perf is
// refused (not root, or perf_event_paranoid), never on a counting error.
func openCounterOrSkip(t *testing.T) *syscallCounter {
	t.Helper()
	c, err := openSyscallCounter()
	if err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("syscall counter unavailable without root: %v", err)
		}
		t.Fatalf("openSyscallCounter as root: %v", err)
	}
	t.Cleanup(c.close)
	return c
}

// countGetpid returns the counter's delta around n getpid(2) calls made on
// the calling goroutine's thread, the least of a few trials (other threads
// of the runtime make syscalls of their own meanwhile).
func countGetpid(t *testing.T, c *syscallCounter, n int) uint64 {
	t.Helper()
	best := ^uint64(0)
	for range 5 {
		before, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		for range n {
			unix.Getpid()
		}
		after, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		best = min(best, after-before)
	}
	return best
}

// checkCount accepts the n calls plus the counter's own reads (one per
// counter) and a little runtime background.
func checkCount(t *testing.T, c *syscallCounter, got uint64, n int) {
	t.Helper()
	lo, hi := uint64(n), uint64(n+len(c.fds)+50)
	t.Logf("counted %d syscalls around %d getpid calls (%d counters)", got, n, len(c.fds))
	if got < lo || got > hi {
		t.Fatalf("counted %d syscalls around %d getpid calls, want %d..%d", got, n, lo, hi)
	}
}

func TestSyscallCounterCountsGetpid(t *testing.T) {
	c := openCounterOrSkip(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	checkCount(t, c, countGetpid(t, c, 1000), 1000)
}

// TestSyscallCounterInheritsNewThreads checks that a thread created after
// the counter was opened is counted (through inherit), and once only.
func TestSyscallCounterInheritsNewThreads(t *testing.T) {
	c := openCounterOrSkip(t)
	old, err := threadIDs()
	if err != nil {
		t.Fatal(err)
	}
	// Goroutines that lock their threads and hold them force the runtime
	// to start new threads for the next ones.
	release := make(chan struct{})
	defer close(release)
	got := make(chan uint64, 1)
	for range 64 {
		started := make(chan bool)
		go func() {
			runtime.LockOSThread()
			fresh := !slices.Contains(old, unix.Gettid())
			started <- fresh
			if fresh {
				got <- countGetpid(t, c, 1000)
			}
			<-release
		}()
		if <-started {
			select {
			case n := <-got:
				checkCount(t, c, n, 1000)
				return
			case <-time.After(10 * time.Second):
				t.Fatal("no count from the new thread")
			}
		}
	}
	t.Skip("the runtime started no new thread")
}

// TestSyscallCounterSkipsChildProcesses checks that a child process
// (the proxy scenario's load generator is one) is not counted: dd makes
// two syscalls per byte it copies.
func TestSyscallCounterSkipsChildProcesses(t *testing.T) {
	c := openCounterOrSkip(t)
	if c.withChildren {
		t.Skip("this kernel has no inherit_thread: child processes are counted")
	}
	dd, err := exec.LookPath("dd")
	if err != nil {
		t.Skip(err)
	}
	before, err := c.read()
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	if out, err := exec.Command(dd, "if=/dev/zero", "of=/dev/null", "bs=1", fmt.Sprint("count=", n)).CombinedOutput(); err != nil {
		t.Fatalf("dd: %v: %s", err, out)
	}
	after, err := c.read()
	if err != nil {
		t.Fatal(err)
	}
	// Starting and waiting for the child costs the parent a few dozen.
	t.Logf("counted %d syscalls around a child making %d", after-before, 2*n)
	if after-before > n/4 {
		t.Fatalf("counted %d syscalls around a child making %d: the child is counted", after-before, 2*n)
	}
}

func TestThreadGauge(t *testing.T) {
	g, err := openThreadGauge()
	if err != nil {
		t.Fatal(err)
	}
	defer g.f.Close()
	n, err := g.threads()
	if err != nil {
		t.Fatal(err)
	}
	tids, err := threadIDs()
	if err != nil {
		t.Fatal(err)
	}
	// Threads may come and go between the two reads, but not many.
	if n < 1 || n < len(tids)-4 || n > len(tids)+4 {
		t.Fatalf("num_threads %d, /proc/self/task lists %d", n, len(tids))
	}
}

func TestParseNumThreads(t *testing.T) {
	line := "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 17 0 123 4096 1 ..."
	n, err := parseNumThreads([]byte(line))
	if err != nil || n != 17 {
		t.Fatalf("parseNumThreads = %d, %v; want 17", n, err)
	}
	if _, err := parseNumThreads([]byte("4242 (x S 1")); err == nil {
		t.Fatal("no error for a line without ')'")
	}
}

// TestMeterSpan checks a span's CPU and wall time on a known busy loop and
// that its syscall count covers known syscalls.
func TestMeterSpan(t *testing.T) {
	m := newMeter()
	sp, err := m.begin()
	if err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	for range 500 {
		unix.Getpid()
	}
	runtime.UnlockOSThread()
	// Spin until this process has used 50 ms of CPU (by getrusage, not
	// the wall clock: on a loaded machine 50 ms of wall time may hold
	// much less CPU), at most 10 s.
	cpuNow := func() time.Duration {
		var ru unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start, deadline := cpuNow(), time.Now().Add(10*time.Second)
	for cpuNow()-start < 50*time.Millisecond && time.Now().Before(deadline) {
	}
	r, err := sp.end(gib)
	if err != nil {
		t.Fatal(err)
	}
	if r.Seconds <= 0 || r.CPU < 0.049 {
		t.Fatalf("span: %.3f s wall, %.3f s CPU after spinning for 50 ms of CPU", r.Seconds, r.CPU)
	}
	if r.Threads < 1 {
		t.Fatalf("peak threads %d", r.Threads)
	}
	if m.sc == nil {
		t.Logf("syscalls not counted: %s", m.scReason)
		return
	}
	if r.Syscalls == nil || *r.Syscalls < 500 {
		t.Fatalf("span counted %v syscalls, want at least 500", r.Syscalls)
	}
}
