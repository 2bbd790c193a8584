//go:build linux

package ring_test

import (
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
	"github.com/pipes-go/pipes/ring"
)

// TestFeatures: Features is what Setup filled into Params.Features, for
// every setup-flag variant the ring takes here.
func TestFeatures(t *testing.T) {
	fdtest.Check(t)
	for _, tc := range []struct {
		name  string
		flags uint32
	}{
		{"default", 0},
		{"CLAMP", ring.IORING_SETUP_CLAMP},
		{"SUBMIT_ALL", ring.IORING_SETUP_SUBMIT_ALL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := ring.Params{Flags: tc.flags}
			r := newRing(t, 4, &p)
			if got := r.Features(); got != p.Features || got != r.Params().Features {
				t.Errorf("Features() = %#x; Setup filled in %#x, Params() has %#x", got, p.Features, r.Params().Features)
			}
			if r.Features()&ring.IORING_FEAT_SINGLE_MMAP == 0 {
				t.Errorf("Features() = %#x lacks IORING_FEAT_SINGLE_MMAP (5.4)", r.Features())
			}
		})
	}
}

// TestSetCQEventfdDisabled posts one NOP completion per entry of
// disabled, with IORING_CQ_EVENTFD_DISABLED set or cleared before each,
// then one more with it cleared, and reads the eventfd's count once:
// only the completions posted while it was clear signal it.
func TestSetCQEventfdDisabled(t *testing.T) {
	fdtest.Check(t)
	for _, tc := range []struct {
		name     string
		disabled []bool
		want     uint64
	}{
		{"enabled", []bool{false}, 2},
		{"disabled", []bool{true}, 1},
		{"disabled twice", []bool{true, true}, 1},
		{"disabled, then enabled", []bool{true, false}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRing(t, 4, nil)
			if r.Params().CQOff.Flags == 0 {
				t.Skip("kernel without CQ ring flags (before 5.8)")
			}
			ef := registeredEventfd(t, r)
			nop := func(ud uint64) {
				s := getSQE(t, r)
				s.PrepNop()
				s.UserData = ud
				submit(t, r, 1)
				if c := reap(t, r, 1)[0]; c.UserData != ud {
					t.Fatalf("CQE %+v, want user_data %d", c, ud)
				}
			}
			for i, d := range tc.disabled {
				r.SetCQEventfdDisabled(d)
				nop(uint64(i + 1))
			}
			r.SetCQEventfdDisabled(false)
			nop(100)
			// The last completion signalled the eventfd: the read does
			// not wait for long, and returns the whole count.
			var buf [8]byte
			if _, err := ef.Read(buf[:]); err != nil {
				t.Fatal(err)
			}
			if got := binary.NativeEndian.Uint64(buf[:]); got != tc.want {
				t.Errorf("eventfd count %d, want %d", got, tc.want)
			}
		})
	}
}

// TestRegister drives io_uring_register(2) through the raw Register,
// checking each registration with the method that undoes it, and an
// opcode the kernel does not know.
func TestRegister(t *testing.T) {
	fdtest.Check(t)
	for _, tc := range []struct {
		name    string
		opcode  uint32
		arg     func(t *testing.T) (unsafe.Pointer, uint32)
		undo    func(r *ring.Ring) error
		wantErr error
	}{
		{
			name:   "EVENTFD",
			opcode: ring.IORING_REGISTER_EVENTFD,
			arg: func(t *testing.T) (unsafe.Pointer, uint32) {
				efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { unix.Close(efd) })
				return unsafe.Pointer(&[1]int32{int32(efd)}), 1
			},
			undo: (*ring.Ring).UnregisterEventfd,
		},
		{
			name:   "FILES",
			opcode: ring.IORING_REGISTER_FILES,
			arg: func(t *testing.T) (unsafe.Pointer, uint32) {
				return unsafe.Pointer(&[2]int32{-1, -1}), 2
			},
			undo: (*ring.Ring).UnregisterFiles,
		},
		{
			name:    "unknown opcode",
			opcode:  250,
			arg:     func(*testing.T) (unsafe.Pointer, uint32) { return nil, 0 },
			wantErr: unix.EINVAL,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRing(t, 4, nil)
			arg, nr := tc.arg(t)
			_, err := r.Register(tc.opcode, arg, nr)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), "io_uring_register") {
					t.Fatalf("Register(%d) = %v, want an io_uring_register error wrapping %v", tc.opcode, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Register(%d): %v", tc.opcode, err)
			}
			if err := tc.undo(r); err != nil {
				t.Errorf("undoing Register(%d): %v (was it registered?)", tc.opcode, err)
			}
		})
	}
}

// TestWaitCQE: WaitCQE returns a CQE already posted, and one posted
// while it waits (a POLL_ADD that completes when another goroutine
// writes the pipe), and advances past each.
func TestWaitCQE(t *testing.T) {
	fdtest.Check(t)
	for _, tc := range []struct {
		name    string
		prep    func(s *ring.SQE, pr int)
		trigger func(t *testing.T, pw int)
		res     func(res int32) bool
	}{
		{
			name:    "ready",
			prep:    func(s *ring.SQE, _ int) { s.PrepNop() },
			trigger: func(*testing.T, int) {},
			res:     func(res int32) bool { return res == 0 },
		},
		{
			name: "posted while waiting",
			prep: func(s *ring.SQE, pr int) { s.PrepPollAdd(int32(pr), unix.POLLIN) },
			trigger: func(t *testing.T, pw int) {
				go unix.Write(pw, []byte("x"))
			},
			res: func(res int32) bool { return res&unix.POLLIN != 0 },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRing(t, 4, nil)
			pr, pw := pipe(t, unix.O_NONBLOCK)
			s := getSQE(t, r)
			tc.prep(s, pr)
			s.UserData = 42
			submit(t, r, 1)
			tc.trigger(t, pw)
			c, err := r.WaitCQE()
			if err != nil {
				t.Fatal(err)
			}
			if c.UserData != 42 || !tc.res(c.Res) {
				t.Errorf("WaitCQE = %+v", c)
			}
			if n := r.CQReady(); n != 0 {
				t.Errorf("%d CQEs ready after WaitCQE, want 0 (not advanced)", n)
			}
		})
	}
}

// TestSubmitAndWaitBoundedByTimeout: SubmitAndWait with waitNr above the
// requests in flight waits as io_uring_enter(2) does, with no timeout of
// its own; a TIMEOUT submitted with the requests ends that wait when it
// fires, with fewer than waitNr CQEs ready, as its doc comment says.
func TestSubmitAndWaitBoundedByTimeout(t *testing.T) {
	fdtest.Check(t)
	r := newRing(t, 4, nil)
	nop := getSQE(t, r)
	nop.PrepNop()
	nop.UserData = 1
	ts := ring.NsecToKernelTimespec(int64(time.Millisecond))
	tm := getSQE(t, r)
	tm.PrepTimeout(&ts, 0, 0)
	tm.UserData = 2
	n, err := r.SubmitAndWait(3)
	runtime.KeepAlive(&ts)
	if n != 2 || err != nil {
		t.Fatalf("SubmitAndWait(3) = %d, %v; want 2, nil", n, err)
	}
	cqes := byUserData(t, reap(t, r, 2))
	if c := cqes[2]; c.Res != -int32(unix.ETIME) {
		t.Errorf("timeout CQE %+v, want res -ETIME", c)
	}
	if got := r.CQReady(); got != 0 {
		t.Errorf("CQReady = %d after reaping both, want 0", got)
	}
}

// TestRegisterFilesUpdateBadFd: a bad descriptor stops
// RegisterFilesUpdate where it is: the slots before it are updated and
// counted, with no error; a bad first descriptor fails with EBADF, and
// slots beyond the table with EINVAL.
func TestRegisterFilesUpdateBadFd(t *testing.T) {
	fdtest.Check(t)
	r := newRing(t, 4, nil)
	if err := r.RegisterFilesSparse(4); err != nil {
		t.Fatal(err)
	}
	rd, wr := pipe(t, 0)
	bad := int32(1 << 20) // above any RLIMIT_NOFILE here: never open
	for _, tc := range []struct {
		name    string
		off     uint32
		fds     []int32
		want    int
		wantErr error
	}{
		{"bad third", 0, []int32{int32(rd), int32(wr), bad, int32(rd)}, 2, nil},
		{"bad first", 0, []int32{bad, int32(rd)}, 0, unix.EBADF},
		{"beyond the table", 3, []int32{-1, -1}, 0, unix.EINVAL},
		{"offset wraps", ^uint32(0), []int32{-1}, 0, unix.EOVERFLOW},
	} {
		n, err := r.RegisterFilesUpdate(tc.off, tc.fds)
		if n != tc.want || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
			t.Errorf("%s: RegisterFilesUpdate = %d, %v; want %d, %v", tc.name, n, err, tc.want, tc.wantErr)
		}
	}
}
