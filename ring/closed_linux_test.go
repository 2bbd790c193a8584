//go:build linux

package ring_test

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
	"github.com/pipes-go/pipes/ring"
)

// TestClosedRing calls every method of a Ring after Close, and of a Ring
// not made by Setup (the zero value): none panics, the errors match
// os.ErrClosed (and EBADF), GetSQE is nil, the counts are 0 and Fd is -1.
func TestClosedRing(t *testing.T) {
	fdtest.Check(t)
	for _, tc := range []struct {
		name string
		make func(t *testing.T) *ring.Ring
	}{
		{"after Close", func(t *testing.T) *ring.Ring {
			r := newRing(t, 4, nil)
			// An SQE handed out and not submitted, and a CQE not reaped,
			// when Close runs.
			s := getSQE(t, r)
			s.PrepNop()
			submit(t, r, 1)
			getSQE(t, r).PrepNop()
			if err := r.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return r
		}},
		{"zero value", func(*testing.T) *ring.Ring { return new(ring.Ring) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.make(t)
			errs := []struct {
				name string
				call func() error
			}{
				{"Submit", func() error { _, err := r.Submit(); return err }},
				{"SubmitAndWait", func() error { _, err := r.SubmitAndWait(1); return err }},
				{"Enter", func() error { _, err := r.Enter(0, 1, ring.IORING_ENTER_GETEVENTS); return err }},
				{"WaitCQE", func() error { _, err := r.WaitCQE(); return err }},
				{"FlushOverflow", r.FlushOverflow},
				{"Probe", func() error { _, err := r.Probe(); return err }},
				{"Register", func() error { _, err := r.Register(ring.IORING_REGISTER_PROBE, nil, 0); return err }},
				{"RegisterEventfd", func() error { return r.RegisterEventfd(0) }},
				{"UnregisterEventfd", r.UnregisterEventfd},
				{"RegisterFilesSparse", func() error { return r.RegisterFilesSparse(4) }},
				{"RegisterFilesUpdate", func() error { _, err := r.RegisterFilesUpdate(0, []int32{-1}); return err }},
				{"UnregisterFiles", r.UnregisterFiles},
				{"RegisterIOWQMaxWorkers", func() error { _, _, err := r.RegisterIOWQMaxWorkers(0, 0); return err }},
			}
			for _, e := range errs {
				err := e.call()
				if !errors.Is(err, os.ErrClosed) || !errors.Is(err, unix.EBADF) {
					t.Errorf("%s = %v, want an error matching os.ErrClosed and EBADF", e.name, err)
				}
			}
			if s := r.GetSQE(); s != nil {
				t.Errorf("GetSQE = %p, want nil", s)
			}
			r.CQAdvance(1)
			r.SetCQEventfdDisabled(true)
			for _, c := range []struct {
				name string
				got  uint32
			}{
				{"SQReady", r.SQReady()},
				{"SQSpaceLeft", r.SQSpaceLeft()},
				{"CQReady", r.CQReady()},
				{"PeekBatchCQE", uint32(r.PeekBatchCQE(make([]ring.CQE, 4)))},
				{"SQFlags", r.SQFlags()},
				{"CQOverflowCount", r.CQOverflowCount()},
				{"SQDropped", r.SQDropped()},
				{"SQHead", r.SQHead()},
			} {
				if c.got != 0 {
					t.Errorf("%s = %d, want 0", c.name, c.got)
				}
			}
			if r.CQOverflowPending() {
				t.Error("CQOverflowPending = true")
			}
			if fd := r.Fd(); fd != -1 {
				t.Errorf("Fd = %d, want -1", fd)
			}
			if err := r.Close(); err != nil {
				t.Errorf("second Close = %v, want nil", err)
			}
		})
	}
}

// TestZeroRingCloseKeepsFd0: a Ring not made by Setup holds no
// descriptor, and its Close must not close descriptor 0 (the zero fd).
func TestZeroRingCloseKeepsFd0(t *testing.T) {
	fdtest.Check(t)
	if _, err := unix.FcntlInt(0, unix.F_GETFD, 0); err != nil {
		t.Skipf("descriptor 0 is not open: %v", err)
	}
	var r ring.Ring
	if err := r.Close(); err != nil {
		t.Errorf("Close of a zero Ring = %v, want nil", err)
	}
	if _, err := unix.FcntlInt(0, unix.F_GETFD, 0); err != nil {
		t.Fatalf("descriptor 0 closed by the Close of a zero Ring: %v", err)
	}
}

// TestNilProbe: the nil Probe a failed Probe returns (here, after Close)
// supports nothing, instead of panicking in a caller that checks an
// opcode before the error.
func TestNilProbe(t *testing.T) {
	fdtest.Check(t)
	r := newRing(t, 2, nil)
	r.Close()
	p, err := r.Probe()
	if p != nil || err == nil {
		t.Fatalf("Probe after Close = %v, %v; want nil and an error", p, err)
	}
	if p.Supported(ring.IORING_OP_NOP) || p.LastOp() != 0 || p.Ops() != nil {
		t.Errorf("nil Probe: Supported(NOP) %v, LastOp %d, Ops %v; want false, 0, nil", p.Supported(ring.IORING_OP_NOP), p.LastOp(), p.Ops())
	}
}
