//go:build linux

package ring_test

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
	"github.com/pipes-go/pipes/ring"
)

func TestSetupReportsKernel(t *testing.T) {
	fdtest.Check(t)
	var p ring.Params
	r := newRing(t, 5, &p)
	if p.SQEntries != 8 || p.CQEntries != 16 {
		t.Errorf("entries 5: SQ %d CQ %d, want 8 and 16", p.SQEntries, p.CQEntries)
	}
	if r.Params() != p {
		t.Errorf("Params() = %+v, Setup filled in %+v", r.Params(), p)
	}
	for _, f := range []struct {
		name string
		bit  uint32
	}{{"SINGLE_MMAP", ring.IORING_FEAT_SINGLE_MMAP}, {"NODROP", ring.IORING_FEAT_NODROP}, {"FAST_POLL", ring.IORING_FEAT_FAST_POLL}, {"CQE_SKIP", ring.IORING_FEAT_CQE_SKIP}} {
		if p.Features&f.bit == 0 {
			t.Errorf("kernel lacks IORING_FEAT_%s (features %#x)", f.name, p.Features)
		}
	}
	if r.Fd() < 0 {
		t.Errorf("Fd = %d", r.Fd())
	}
	t.Logf("features %#x, sq_off %+v, cq_off %+v", p.Features, p.SQOff, p.CQOff)
}

// TestSetupFailure: invalid entries give EINVAL, no panic, nothing left
// open or mapped; the seam gives ENOSYS and EPERM.
func TestSetupFailure(t *testing.T) {
	fdtest.Check(t)
	maps := ringMappings(t)
	for _, tc := range []struct {
		name    string
		entries uint32
		flags   uint32
		want    error
	}{
		{"zero entries", 0, 0, unix.EINVAL},
		{"above max without CLAMP", ring.MaxEntries + 1, 0, unix.EINVAL},
		{"huge without CLAMP", 1 << 30, 0, unix.EINVAL},
		{"SQE128 unsupported here", 8, ring.IORING_SETUP_SQE128, unix.EINVAL},
		{"unknown flag", 8, 1 << 30, unix.EINVAL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			needKernelRing(t)
			p := &ring.Params{Flags: tc.flags}
			r, err := ring.Setup(tc.entries, p)
			if r != nil || !errors.Is(err, tc.want) {
				t.Fatalf("Setup = %v, %v; want nil, %v", r, err, tc.want)
			}
		})
	}
	for _, errno := range []syscall.Errno{unix.ENOSYS, unix.EPERM} {
		t.Run("seam "+errno.Error(), func(t *testing.T) {
			defer ring.SetSetupSyscall(func(uint32, *ring.Params) (int, syscall.Errno) { return -1, errno })()
			r, err := ring.Setup(8, nil)
			if r != nil || !errors.Is(err, errno) {
				t.Fatalf("Setup = %v, %v; want nil, %v", r, err, errno)
			}
			if errno == unix.ENOSYS && !errors.Is(err, errors.ErrUnsupported) {
				t.Errorf("ENOSYS error %v is not errors.ErrUnsupported", err)
			}
		})
	}
	// A failing mmap (the 1st, or the last after others succeeded) leaves
	// nothing mapped and the ring fd closed.
	for _, failAt := range []int{1, 2} {
		t.Run(fmt.Sprintf("mmap %d fails", failAt), func(t *testing.T) {
			needKernelRing(t)
			calls := 0
			defer ring.SetMmap(func(fd int, off int64, n, prot, flags int) ([]byte, error) {
				calls++
				if calls == failAt {
					return nil, unix.ENOMEM
				}
				return ring.Mmap(fd, off, n, prot, flags)
			})()
			r, err := ring.Setup(8, nil)
			if r != nil || !errors.Is(err, unix.ENOMEM) {
				t.Fatalf("Setup = %v, %v; want nil, ENOMEM", r, err)
			}
			if got := ringMappings(t); got != maps {
				t.Errorf("%d io_uring mappings after a failed Setup, %d before", got, maps)
			}
		})
	}
	t.Run("CLAMP", func(t *testing.T) {
		p := &ring.Params{Flags: ring.IORING_SETUP_CLAMP}
		r := newRing(t, 1<<20, p)
		if p.SQEntries != ring.MaxEntries {
			t.Errorf("CLAMP: SQ entries %d, want %d", p.SQEntries, ring.MaxEntries)
		}
		r.Close()
	})
	if got := ringMappings(t); got != maps {
		t.Errorf("%d io_uring mappings at the end, %d before", got, maps)
	}
}

func TestCloseTwice(t *testing.T) {
	fdtest.Check(t)
	needKernelRing(t)
	maps := ringMappings(t)
	r, err := ring.Setup(4, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ringMappings(t) == maps {
		t.Error("no io_uring mapping seen while the ring is open")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if r.Fd() != -1 {
		t.Errorf("Fd after Close = %d", r.Fd())
	}
	if got := ringMappings(t); got != maps {
		t.Errorf("%d io_uring mappings after Close, %d before", got, maps)
	}
}

var setupVariants = []struct {
	name  string
	flags uint32
	lock  bool // SINGLE_ISSUER/DEFER_TASKRUN: one OS thread
}{
	{"default", 0, false},
	{"SQPOLL", ring.IORING_SETUP_SQPOLL, false},
	{"COOP_TASKRUN|TASKRUN_FLAG", ring.IORING_SETUP_COOP_TASKRUN | ring.IORING_SETUP_TASKRUN_FLAG, false},
	{"SINGLE_ISSUER|DEFER_TASKRUN", ring.IORING_SETUP_SINGLE_ISSUER | ring.IORING_SETUP_DEFER_TASKRUN, true},
	{"SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG", ring.IORING_SETUP_SINGLE_ISSUER | ring.IORING_SETUP_DEFER_TASKRUN | ring.IORING_SETUP_TASKRUN_FLAG, true},
	{"NO_SQARRAY", ring.IORING_SETUP_NO_SQARRAY, false},
	{"SUBMIT_ALL|CQSIZE", ring.IORING_SETUP_SUBMIT_ALL | ring.IORING_SETUP_CQSIZE, false},
}

// TestNopRoundTrip submits NOPs in batches of 1..4x the SQ size, so both
// rings wrap around many times, and checks that every user_data comes back
// exactly once.
func TestNopRoundTrip(t *testing.T) {
	fdtest.Check(t)
	for _, v := range setupVariants {
		for _, entries := range []uint32{1, 4, 16} {
			t.Run(fmt.Sprintf("%s/entries=%d", v.name, entries), func(t *testing.T) {
				if v.lock {
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
				}
				p := &ring.Params{Flags: v.flags, SQThreadIdle: 1, CQEntries: 4 * entries}
				r := newRing(t, entries, p)
				sqpoll := v.flags&ring.IORING_SETUP_SQPOLL != 0
				next := uint64(1)
				total := 0
				for batch := 1; batch <= 4*int(p.SQEntries); batch++ {
					want := make(map[uint64]bool, batch)
					var got []ring.CQE
					buf := make([]ring.CQE, 8)
					for sent := 0; sent < batch; {
						sqe := r.GetSQE()
						if sqe == nil {
							if r.SQSpaceLeft() != 0 || r.SQReady() != p.SQEntries {
								t.Fatalf("GetSQE nil with SQReady %d, SQSpaceLeft %d", r.SQReady(), r.SQSpaceLeft())
							}
							if _, err := r.Submit(); err != nil {
								t.Fatal(err)
							}
							if sqpoll {
								if _, err := r.Enter(0, 0, ring.IORING_ENTER_SQ_WAIT); err != nil {
									t.Fatal(err)
								}
							}
							n := r.PeekBatchCQE(buf)
							got = append(got, buf[:n]...)
							r.CQAdvance(uint32(n))
							continue
						}
						sqe.PrepNop()
						sqe.UserData = next
						want[next] = true
						next += 0x10001 // exercise high bits too
						sent++
					}
					if _, err := r.Submit(); err != nil {
						t.Fatal(err)
					}
					got = append(got, reap(t, r, batch-len(got))...)
					for uid, c := range byUserData(t, got) {
						if !want[uid] || c.Res != 0 {
							t.Fatalf("batch %d: unexpected CQE %+v", batch, c)
						}
					}
					if len(got) != batch {
						t.Fatalf("batch %d: %d CQEs", batch, len(got))
					}
					total += batch
				}
				if r.CQReady() != 0 || r.SQReady() != 0 {
					t.Errorf("left over: CQReady %d SQReady %d", r.CQReady(), r.SQReady())
				}
				if h := r.SQHead(); h != uint32(total) {
					t.Errorf("SQHead = %d after %d SQEs consumed", h, total)
				}
				if r.CQOverflowCount() != 0 || r.SQDropped() != 0 {
					t.Errorf("overflow %d dropped %d", r.CQOverflowCount(), r.SQDropped())
				}
			})
		}
	}
}

// TestCQOverflow submits more NOPs than the CQ holds without reaping, then
// reaps them all: with IORING_FEAT_NODROP none is lost.
func TestCQOverflow(t *testing.T) {
	fdtest.Check(t)
	for _, explicit := range []bool{false, true} {
		t.Run(fmt.Sprintf("explicit flush=%v", explicit), func(t *testing.T) {
			var p ring.Params
			r := newRing(t, 4, &p) // CQ of 8
			if p.Features&ring.IORING_FEAT_NODROP == 0 {
				t.Fatal("no IORING_FEAT_NODROP")
			}
			const total = 40
			ud := uint64(0)
			for ud < total {
				for i := 0; i < 4; i++ {
					sqe := getSQE(t, r)
					sqe.PrepNop()
					sqe.UserData = ud
					ud++
				}
				if n, err := r.Submit(); err != nil || n != 4 {
					t.Fatalf("Submit with %d CQEs ready, overflow=%v: %d, %v", r.CQReady(), r.CQOverflowPending(), n, err)
				}
			}
			if r.CQReady() != p.CQEntries || !r.CQOverflowPending() {
				t.Fatalf("after %d NOPs: CQReady %d, overflow pending %v", total, r.CQReady(), r.CQOverflowPending())
			}
			var got []ring.CQE
			buf := make([]ring.CQE, 3)
			for len(got) < total {
				n := r.PeekBatchCQE(buf)
				if n == 0 && explicit {
					if !r.CQOverflowPending() {
						t.Fatalf("CQ empty, no overflow, %d of %d CQEs", len(got), total)
					}
					if err := r.FlushOverflow(); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if n == 0 {
					t.Fatalf("PeekBatchCQE found nothing after %d of %d (overflow pending %v)", len(got), total, r.CQOverflowPending())
				}
				got = append(got, buf[:n]...)
				r.CQAdvance(uint32(n))
			}
			m := byUserData(t, got)
			for i := uint64(0); i < total; i++ {
				if _, ok := m[i]; !ok {
					t.Errorf("CQE %d lost", i)
				}
			}
			// Ordering: overflowed CQEs come after the ones in the ring.
			for i, c := range got {
				if c.UserData != uint64(i) {
					t.Errorf("CQE %d has user_data %d", i, c.UserData)
					break
				}
			}
			if r.CQOverflowPending() || r.CQOverflowCount() != 0 {
				t.Errorf("after reaping: overflow pending %v, dropped %d", r.CQOverflowPending(), r.CQOverflowCount())
			}
		})
	}
}

// TestSQPOLLWakeup lets the SQ thread fall asleep, then checks that Submit
// wakes it.
func TestSQPOLLWakeup(t *testing.T) {
	fdtest.Check(t)
	p := &ring.Params{Flags: ring.IORING_SETUP_SQPOLL, SQThreadIdle: 1}
	r := newRing(t, 4, p)
	for round := 0; round < 3; round++ {
		sqe := getSQE(t, r)
		sqe.PrepNop()
		sqe.UserData = uint64(round)
		submit(t, r, 1)
		c := reap(t, r, 1)[0]
		if c.UserData != uint64(round) || c.Res != 0 {
			t.Fatalf("CQE %+v", c)
		}
		// Idle is 1 ms: after 20 ms the thread sleeps and asks for a wakeup.
		deadline := 200
		for ; deadline > 0 && r.SQFlags()&ring.IORING_SQ_NEED_WAKEUP == 0; deadline-- {
			time.Sleep(time.Millisecond)
		}
		if deadline == 0 {
			t.Fatal("SQ thread never set IORING_SQ_NEED_WAKEUP")
		}
	}
}

// TestTwoSides runs the submission side and the completion side in two
// goroutines at once, as the concurrency contract allows (run under -race).
func TestTwoSides(t *testing.T) {
	fdtest.Check(t)
	r := newRing(t, 16, nil)
	const total = 5000
	done := make(chan map[uint64]bool)
	go func() {
		seen := make(map[uint64]bool, total)
		buf := make([]ring.CQE, 16)
		for len(seen) < total {
			n := r.PeekBatchCQE(buf)
			if n == 0 {
				c, err := r.WaitCQE()
				if err != nil {
					t.Error(err)
					break
				}
				seen[c.UserData] = true
				continue
			}
			for _, c := range buf[:n] {
				seen[c.UserData] = true
			}
			r.CQAdvance(uint32(n))
		}
		done <- seen
	}()
	for ud := uint64(0); ud < total; {
		if ud%7 == 0 && r.SQReady() > 0 {
			if _, err := r.Submit(); err != nil {
				t.Fatal(err)
			}
		}
		sqe := r.GetSQE()
		if sqe == nil {
			if _, err := r.Submit(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		sqe.PrepNop()
		sqe.UserData = ud
		ud++
	}
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	select {
	case seen := <-done:
		if len(seen) != total {
			t.Fatalf("%d distinct CQEs, want %d", len(seen), total)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("stalled: SQReady %d, SQFlags %#x, CQReady %d, overflow count %d, dropped %d",
			r.SQReady(), r.SQFlags(), r.CQReady(), r.CQOverflowCount(), r.SQDropped())
		n, err := r.Submit()
		t.Errorf("Submit again: %d, %v", n, err)
		// Unblock the reaper so the test can end.
		for i := 0; i < total; i++ {
			if sqe := r.GetSQE(); sqe != nil {
				sqe.PrepNop()
				sqe.UserData = uint64(total + i)
			}
			r.Submit()
			select {
			case seen := <-done:
				t.Fatalf("reaper finished after %d more NOPs, %d distinct", i+1, len(seen))
			default:
			}
		}
		<-done
	}
}

// TestSetupRefusesUnknownFlags: a setup flag this package has no constant
// for (6.13's HYBRID_IOPOLL, 6.18's CQE_MIXED, which puts 32-byte CQEs in
// the CQ ring, and later ones) is refused with EINVAL before the system
// call, as SQE128 and CQE32 are: the package reads the rings as 64-byte
// SQEs and 16-byte CQEs.
func TestSetupRefusesUnknownFlags(t *testing.T) {
	fdtest.Check(t)
	for _, flags := range []uint32{1 << 17, 1 << 18, 1 << 19, 1 << 31, ring.IORING_SETUP_CQE32} {
		called := false
		restore := ring.SetSetupSyscall(func(uint32, *ring.Params) (int, syscall.Errno) {
			called = true
			return -1, unix.ENOSYS
		})
		r, err := ring.Setup(4, &ring.Params{Flags: flags})
		restore()
		if r != nil || !errors.Is(err, unix.EINVAL) || called {
			t.Errorf("Setup(flags %#x) = %v, %v (system call made: %v); want nil, EINVAL, no system call", flags, r, err, called)
		}
	}
}
