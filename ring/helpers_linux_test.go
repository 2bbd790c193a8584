//go:build linux

package ring_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/ring"
)

// newRing sets up a ring closed at the end of the test. It skips only when
// the kernel refuses io_uring itself (ENOSYS, EPERM).
func newRing(tb testing.TB, entries uint32, p *ring.Params) *ring.Ring {
	tb.Helper()
	r, err := ring.Setup(entries, p)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		tb.Skipf("kernel refuses io_uring: %v", err)
	}
	if err != nil {
		tb.Fatalf("Setup(%d): %v", entries, err)
	}
	tb.Cleanup(func() {
		if err := r.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return r
}

// needKernelRing skips the test where the kernel refuses io_uring
// (ENOSYS, EPERM: no io_uring, io_uring_disabled, a seccomp filter such
// as a container's), for tests that call Setup themselves.
func needKernelRing(tb testing.TB) {
	tb.Helper()
	r, err := ring.Setup(1, nil)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		tb.Skipf("kernel refuses io_uring: %v", err)
	}
	if err == nil {
		r.Close()
	}
}

// registeredEventfd registers a new non-blocking eventfd with r and
// returns it as an *os.File, read through the Go netpoller, closed at the
// end of the test.
func registeredEventfd(tb testing.TB, r *ring.Ring) *os.File {
	tb.Helper()
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		tb.Fatal(err)
	}
	ef := os.NewFile(uintptr(efd), "eventfd")
	tb.Cleanup(func() { ef.Close() })
	if err := r.RegisterEventfd(efd); err != nil {
		tb.Fatal(err)
	}
	return ef
}

// reap collects n CQEs, waiting as needed.
func reap(tb testing.TB, r *ring.Ring, n int) []ring.CQE {
	tb.Helper()
	out := make([]ring.CQE, 0, n)
	buf := make([]ring.CQE, 64)
	for len(out) < n {
		k := r.PeekBatchCQE(buf[:min(len(buf), n-len(out))])
		if k > 0 {
			out = append(out, buf[:k]...)
			r.CQAdvance(uint32(k))
			continue
		}
		cqe, err := r.WaitCQE()
		if err != nil {
			tb.Fatalf("WaitCQE after %d of %d CQEs: %v", len(out), n, err)
		}
		out = append(out, cqe)
	}
	return out
}

// byUserData indexes CQEs by user_data, failing on duplicates.
func byUserData(tb testing.TB, cqes []ring.CQE) map[uint64]ring.CQE {
	tb.Helper()
	m := make(map[uint64]ring.CQE, len(cqes))
	for _, c := range cqes {
		if _, dup := m[c.UserData]; dup {
			tb.Fatalf("two CQEs with user_data %#x", c.UserData)
		}
		m[c.UserData] = c
	}
	return m
}

// getSQE returns an SQE, failing the test when the SQ is full.
func getSQE(tb testing.TB, r *ring.Ring) *ring.SQE {
	tb.Helper()
	sqe := r.GetSQE()
	if sqe == nil {
		tb.Fatal("GetSQE: SQ full")
	}
	return sqe
}

// submit submits and checks that want SQEs were consumed.
func submit(tb testing.TB, r *ring.Ring, want int) {
	tb.Helper()
	n, err := r.Submit()
	if err != nil || n != want {
		tb.Fatalf("Submit = %d, %v; want %d", n, err, want)
	}
}

// pipe returns a pipe closed at the end of the test.
func pipe(tb testing.TB, flags int) (r, w int) {
	tb.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|flags); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

// ringMappings counts this process's io_uring mappings.
func ringMappings(tb testing.TB) int {
	tb.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		tb.Fatal(err)
	}
	return strings.Count(string(b), "io_uring")
}

// kernelAtLeast reports whether the running kernel is at least major.minor.
func kernelAtLeast(tb testing.TB, major, minor int) bool {
	tb.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		tb.Fatal(err)
	}
	var ma, mi int
	rel := unix.ByteSliceToString(u.Release[:])
	for i, part := range strings.SplitN(rel, ".", 3)[:2] {
		n := 0
		for _, c := range part {
			if c < '0' || c > '9' {
				break
			}
			n = n*10 + int(c-'0')
		}
		if i == 0 {
			ma = n
		} else {
			mi = n
		}
	}
	return ma > major || ma == major && mi >= minor
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
