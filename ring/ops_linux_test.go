//go:build linux

package ring_test

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
	"github.com/pipes-go/pipes/ring"
)

// tempFile returns an fd of a new temporary file holding data.
func tempFile(tb testing.TB, data []byte) *os.File {
	tb.Helper()
	f, err := os.Create(filepath.Join(tb.TempDir(), "f"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	if _, err := f.Write(data); err != nil {
		tb.Fatal(err)
	}
	return f
}

func randomBytes(tb testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestSpliceLinked copies a file to another file through a pipe, one
// IOSQE_IO_LINK pair (file -> pipe, pipe -> file) per round, with explicit
// offsets on the files, and compares byte for byte.
func TestSpliceLinked(t *testing.T) {
	fdtest.Check(t)
	r := newRing(t, 8, nil)
	const size = 8<<20 + 12345 // not a multiple of the chunk: the last round is short
	data := randomBytes(t, size)
	src := tempFile(t, data)
	dst := tempFile(t, nil)
	pr, pw := pipe(t, 0)
	const chunk = 64 << 10 // the default pipe capacity
	var off int64
	rounds, shortRounds := 0, 0
	for off < size {
		want := uint32(chunk) // the last round is short: its linked splice is cancelled
		s := getSQE(t, r)
		s.PrepSplice(int32(src.Fd()), off, int32(pw), -1, want, 0)
		s.Flags = ring.IOSQE_IO_LINK
		s.UserData = 1
		s = getSQE(t, r)
		s.PrepSplice(int32(pr), -1, int32(dst.Fd()), off, want, 0)
		s.UserData = 2
		if n, err := r.SubmitAndWait(2); err != nil || n != 2 {
			t.Fatalf("SubmitAndWait = %d, %v", n, err)
		}
		m := byUserData(t, reap(t, r, 2))
		in, out := m[1].Res, m[2].Res
		switch {
		case in < 0:
			t.Fatalf("splice file->pipe at %d: %v", off, unix.Errno(-in))
		case in == int32(want) && out != in:
			t.Fatalf("splice pipe->file at %d: %d (in %d)", off, out, in)
		case in < int32(want):
			// Short: the linked splice is cancelled; drain what the
			// pipe holds.
			if out != -int32(unix.ECANCELED) {
				t.Fatalf("short splice (%d of %d) did not cancel the link: %d", in, want, out)
			}
			shortRounds++
			s = getSQE(t, r)
			s.PrepSplice(int32(pr), -1, int32(dst.Fd()), off, uint32(in), 0)
			submit(t, r, 1)
			if c := reap(t, r, 1)[0]; c.Res != in {
				t.Fatalf("drain splice: %d, want %d", c.Res, in)
			}
		}
		off += int64(in)
		rounds++
	}
	got, err := os.ReadFile(dst.Name())
	if err != nil {
		t.Fatal(err)
	}
	if shortRounds != 1 {
		t.Errorf("%d short rounds, want 1 (the last)", shortRounds)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("copy differs: %d bytes, want %d", len(got), len(data))
	}
	t.Logf("%d rounds, %d short", rounds, shortRounds)
	runtime.KeepAlive(src)
	runtime.KeepAlive(dst)
}

// TestSpliceShortLink: a short SPLICE cancels the IOSQE_IO_LINK'ed SQE
// (-ECANCELED) but not an IOSQE_IO_HARDLINK'ed one.
func TestSpliceShortLink(t *testing.T) {
	fdtest.Check(t)
	r := newRing(t, 8, nil)
	src := tempFile(t, []byte("only 16 bytes.\n\n"))
	for _, tc := range []struct {
		name string
		flag uint8
		want int32
	}{
		{"IO_LINK", ring.IOSQE_IO_LINK, -int32(unix.ECANCELED)},
		{"IO_HARDLINK", ring.IOSQE_IO_HARDLINK, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr, pw := pipe(t, 0)
			s := getSQE(t, r)
			s.PrepSplice(int32(src.Fd()), 0, int32(pw), -1, 4096, 0)
			s.Flags = tc.flag
			s.UserData = 1
			s = getSQE(t, r)
			s.PrepNop()
			s.UserData = 2
			submit(t, r, 2)
			m := byUserData(t, reap(t, r, 2))
			if m[1].Res != 16 || m[2].Res != tc.want {
				t.Fatalf("splice res %d (want 16), linked NOP res %d (want %d)", m[1].Res, m[2].Res, tc.want)
			}
			buf := make([]byte, 32)
			if n, _ := unix.Read(pr, buf); n != 16 {
				t.Fatalf("pipe holds %d bytes", n)
			}
		})
	}
	runtime.KeepAlive(src)
}

// TestTee duplicates pipe contents into a second pipe without consuming
// them.
func TestTee(t *testing.T) {
	fdtest.Check(t)
	r := newRing(t, 4, nil)
	ar, aw := pipe(t, 0)
	br, bw := pipe(t, 0)
	msg := []byte("tee me")
	if _, err := unix.Write(aw, msg); err != nil {
		t.Fatal(err)
	}
	s := getSQE(t, r)
	s.PrepTee(int32(ar), int32(bw), 1024, 0)
	s.UserData = 9
	submit(t, r, 1)
	if c := reap(t, r, 1)[0]; c.Res != int32(len(msg)) || c.UserData != 9 {
		t.Fatalf("tee CQE %+v", c)
	}
	for _, fd := range []int{ar, br} {
		buf := make([]byte, 64)
		n, err := unix.Read(fd, buf)
		if err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("read %q, %v; want %q", buf[:n], err, msg)
		}
	}
}

// TestPollAdd: a POLL_ADD on an empty pipe completes once it is written.
func TestPollAdd(t *testing.T) {
	fdtest.Check(t)
	r := newRing(t, 4, nil)
	pr, pw := pipe(t, unix.O_NONBLOCK)
	s := getSQE(t, r)
	s.PrepPollAdd(int32(pr), unix.POLLIN)
	s.UserData = 5
	submit(t, r, 1)
	time.Sleep(10 * time.Millisecond)
	if r.CQReady() != 0 {
		t.Fatalf("poll on an empty pipe completed: %d CQEs", r.CQReady())
	}
	if _, err := unix.Write(pw, []byte("x")); err != nil {
		t.Fatal(err)
	}
	c := reap(t, r, 1)[0]
	if c.UserData != 5 || c.Res < 0 || c.Res&unix.POLLIN == 0 {
		t.Fatalf("poll CQE %+v", c)
	}
}

// TestCancelPoll cancels a pending POLL_ADD by user_data, by fd and by
// POLL_REMOVE: the poll completes with -ECANCELED, the cancel with 0 (or
// the count with IORING_ASYNC_CANCEL_ALL).
func TestCancelPoll(t *testing.T) {
	fdtest.Check(t)
	r := newRing(t, 8, nil)
	pr, _ := pipe(t, unix.O_NONBLOCK)
	for _, tc := range []struct {
		name       string
		polls      int
		prep       func(*ring.SQE)
		wantCancel int32
	}{
		{"by user_data", 1, func(s *ring.SQE) { s.PrepCancel64(100, 0) }, 0},
		{"by fd", 1, func(s *ring.SQE) { s.PrepCancelFd(int32(pr), 0) }, 0},
		{"by fd, all", 3, func(s *ring.SQE) { s.PrepCancelFd(int32(pr), ring.IORING_ASYNC_CANCEL_ALL) }, 3},
		{"POLL_REMOVE", 1, func(s *ring.SQE) { s.PrepPollRemove(100) }, 0},
		{"nothing to cancel", 0, func(s *ring.SQE) { s.PrepCancel64(100, 0) }, -int32(unix.ENOENT)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i < tc.polls; i++ {
				s := getSQE(t, r)
				s.PrepPollAdd(int32(pr), unix.POLLIN)
				s.UserData = 100 + uint64(i)
			}
			submit(t, r, tc.polls)
			s := getSQE(t, r)
			tc.prep(s)
			s.UserData = 1
			start := time.Now()
			submit(t, r, 1)
			m := byUserData(t, reap(t, r, tc.polls+1))
			if m[1].Res != tc.wantCancel {
				t.Errorf("cancel res %d, want %d", m[1].Res, tc.wantCancel)
			}
			for i := 0; i < tc.polls; i++ {
				if c := m[100+uint64(i)]; c.Res != -int32(unix.ECANCELED) {
					t.Errorf("poll %d res %d, want -ECANCELED", i, c.Res)
				}
			}
			t.Logf("cancelled in %v", time.Since(start))
		})
	}
}

// TestTimeouts: a LINK_TIMEOUT expires (-ETIME) and cancels the linked
// POLL_ADD (-ECANCELED); a TIMEOUT alone completes with -ETIME; a
// LINK_TIMEOUT whose request completes first is cancelled.
func TestTimeouts(t *testing.T) {
	fdtest.Check(t)
	r := newRing(t, 8, nil)
	pr, pw := pipe(t, unix.O_NONBLOCK)

	t.Run("LINK_TIMEOUT expires", func(t *testing.T) {
		ts := &ring.KernelTimespec{Nsec: 20e6}
		s := getSQE(t, r)
		s.PrepPollAdd(int32(pr), unix.POLLIN)
		s.Flags = ring.IOSQE_IO_LINK
		s.UserData = 1
		s = getSQE(t, r)
		s.PrepLinkTimeout(ts, 0)
		s.UserData = 2
		start := time.Now()
		submit(t, r, 2)
		runtime.KeepAlive(ts)
		m := byUserData(t, reap(t, r, 2))
		if m[1].Res != -int32(unix.ECANCELED) || m[2].Res != -int32(unix.ETIME) {
			t.Fatalf("poll %d (want -ECANCELED), timeout %d (want -ETIME)", m[1].Res, m[2].Res)
		}
		if d := time.Since(start); d < 15*time.Millisecond {
			t.Errorf("timeout after %v, want ~20ms", d)
		}
	})
	t.Run("LINK_TIMEOUT not reached", func(t *testing.T) {
		if _, err := unix.Write(pw, []byte("x")); err != nil {
			t.Fatal(err)
		}
		defer unix.Read(pr, make([]byte, 8))
		ts := &ring.KernelTimespec{Sec: 10}
		s := getSQE(t, r)
		s.PrepPollAdd(int32(pr), unix.POLLIN)
		s.Flags = ring.IOSQE_IO_LINK
		s.UserData = 1
		s = getSQE(t, r)
		s.PrepLinkTimeout(ts, 0)
		s.UserData = 2
		submit(t, r, 2)
		runtime.KeepAlive(ts)
		m := byUserData(t, reap(t, r, 2))
		if m[1].Res&unix.POLLIN == 0 || m[2].Res != -int32(unix.ECANCELED) {
			t.Fatalf("poll %d (want POLLIN), timeout %d (want -ECANCELED)", m[1].Res, m[2].Res)
		}
	})
	t.Run("TIMEOUT", func(t *testing.T) {
		ts := ring.NsecToKernelTimespec(int64(5 * time.Millisecond))
		s := getSQE(t, r)
		s.PrepTimeout(&ts, 0, 0)
		s.UserData = 3
		submit(t, r, 1)
		runtime.KeepAlive(&ts)
		if c := reap(t, r, 1)[0]; c.Res != -int32(unix.ETIME) {
			t.Fatalf("timeout res %d, want -ETIME", c.Res)
		}
	})
	t.Run("TIMEOUT by count", func(t *testing.T) {
		ts := &ring.KernelTimespec{Sec: 10}
		s := getSQE(t, r)
		s.PrepTimeout(ts, 2, 0)
		s.UserData = 4
		for i := 0; i < 2; i++ {
			s = getSQE(t, r)
			s.PrepNop()
			s.UserData = 10 + uint64(i)
		}
		submit(t, r, 3)
		runtime.KeepAlive(ts)
		if m := byUserData(t, reap(t, r, 3)); m[4].Res != 0 {
			t.Fatalf("timeout res %d, want 0 after 2 completions", m[4].Res)
		}
	})
}

// TestCQESkipSuccess: a successful SQE with IOSQE_CQE_SKIP_SUCCESS posts
// no CQE.
func TestCQESkipSuccess(t *testing.T) {
	fdtest.Check(t)
	r := newRing(t, 4, nil)
	s := getSQE(t, r)
	s.PrepNop()
	s.Flags = ring.IOSQE_CQE_SKIP_SUCCESS
	s.UserData = 1
	s = getSQE(t, r)
	s.PrepNop()
	s.UserData = 2
	submit(t, r, 2)
	if c := reap(t, r, 1)[0]; c.UserData != 2 || r.CQReady() != 0 {
		t.Fatalf("CQE %+v, %d more ready", c, r.CQReady())
	}
}

// TestEventfdWakesNetpoller registers an eventfd and checks that a
// goroutine blocked reading it through the Go netpoller wakes when a CQE is
// posted.
func TestEventfdWakesNetpoller(t *testing.T) {
	fdtest.Check(t)
	r := newRing(t, 4, nil)
	ef := registeredEventfd(t, r)
	woke := make(chan error, 1)
	go func() {
		var buf [8]byte
		_, err := ef.Read(buf[:]) // parks in the netpoller: the fd is non-blocking
		woke <- err
	}()
	select {
	case err := <-woke:
		t.Fatalf("eventfd read returned before any CQE: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	s := getSQE(t, r)
	s.PrepNop()
	s.UserData = 77
	submit(t, r, 1)
	select {
	case err := <-woke:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("CQE posted, eventfd reader not woken")
	}
	if c := reap(t, r, 1)[0]; c.UserData != 77 {
		t.Fatalf("CQE %+v", c)
	}
	if err := r.UnregisterEventfd(); err != nil {
		t.Fatal(err)
	}
	if err := r.UnregisterEventfd(); !errorsIs(err, unix.ENXIO) {
		t.Errorf("second UnregisterEventfd: %v, want ENXIO", err)
	}
}

// TestRegisteredFiles: a sparse table, a slot updated and used with
// SPLICE_F_FD_IN_FIXED and IOSQE_FIXED_FILE, then cleared.
func TestRegisteredFiles(t *testing.T) {
	fdtest.Check(t)
	for _, fallback := range []bool{false, true} {
		name := "FILES2 sparse"
		if fallback {
			name = "FILES with -1 (FILES2 refused)"
		}
		t.Run(name, func(t *testing.T) {
			if fallback {
				defer ring.FailRegister(ring.IORING_REGISTER_FILES2, unix.EINVAL)()
			}
			r := newRing(t, 4, nil)
			data := randomBytes(t, 10000)
			src := tempFile(t, data)
			pr, pw := pipe(t, 0)
			if err := r.RegisterFilesSparse(8); err != nil {
				t.Fatal(err)
			}
			if n, err := r.RegisterFilesUpdate(3, []int32{int32(src.Fd()), int32(pw)}); err != nil || n != 2 {
				t.Fatalf("RegisterFilesUpdate = %d, %v", n, err)
			}
			// Slots hold their own reference: the caller's fd may go.
			s := getSQE(t, r)
			s.PrepSplice(3, 0, 4, -1, uint32(len(data)), ring.SPLICE_F_FD_IN_FIXED)
			s.Flags = ring.IOSQE_FIXED_FILE
			s.UserData = 1
			submit(t, r, 1)
			if c := reap(t, r, 1)[0]; c.Res != int32(len(data)) {
				t.Fatalf("fixed splice res %d", c.Res)
			}
			got := make([]byte, len(data)+1)
			n, _ := unix.Read(pr, got)
			if !bytes.Equal(got[:n], data) {
				t.Fatalf("pipe holds %d bytes, not the file", n)
			}
			if n, err := r.RegisterFilesUpdate(3, []int32{-1}); err != nil || n != 1 {
				t.Fatalf("clear slot: %d, %v", n, err)
			}
			s = getSQE(t, r)
			s.PrepSplice(3, 0, 4, -1, 10, ring.SPLICE_F_FD_IN_FIXED)
			s.Flags = ring.IOSQE_FIXED_FILE
			s.UserData = 2
			submit(t, r, 1)
			if c := reap(t, r, 1)[0]; c.Res != -int32(unix.EBADF) {
				t.Fatalf("splice from a cleared slot: res %d, want -EBADF", c.Res)
			}
			if err := r.RegisterFilesSparse(8); !errorsIs(err, unix.EBUSY) {
				t.Errorf("second table: %v, want EBUSY", err)
			}
			if err := r.UnregisterFiles(); err != nil {
				t.Fatal(err)
			}
			if err := r.UnregisterFiles(); !errorsIs(err, unix.ENXIO) {
				t.Errorf("second UnregisterFiles: %v, want ENXIO", err)
			}
			runtime.KeepAlive(src)
		})
	}
}

// TestIOWQMaxWorkers sets the caps and reads them back. The previous values
// are the calling thread's, so the test stays on one thread that has
// submitted to the ring.
func TestIOWQMaxWorkers(t *testing.T) {
	fdtest.Check(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := newRing(t, 4, nil)
	s := getSQE(t, r)
	s.PrepNop()
	s.Flags = ring.IOSQE_ASYNC // start this thread's io-wq
	submit(t, r, 1)
	reap(t, r, 1)
	b0, u0, err := r.RegisterIOWQMaxWorkers(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if b0 == 0 || u0 == 0 {
		t.Errorf("default caps %d, %d: want non-zero", b0, u0)
	}
	b, u, err := r.RegisterIOWQMaxWorkers(2, 3)
	if err != nil || b != b0 || u != u0 {
		t.Fatalf("set (2, 3): prev %d, %d, %v; want %d, %d", b, u, err, b0, u0)
	}
	b, u, err = r.RegisterIOWQMaxWorkers(0, 5)
	if err != nil || b != 2 || u != 3 {
		t.Fatalf("set (0, 5): prev %d, %d, %v; want 2, 3", b, u, err)
	}
	b, u, err = r.RegisterIOWQMaxWorkers(0, 0)
	if err != nil || b != 2 || u != 5 {
		t.Fatalf("read: %d, %d, %v; want 2, 5", b, u, err)
	}
	t.Logf("default caps on this machine: bounded %d, unbounded %d", b0, u0)
}

// TestProbe: the probe reports the opcodes the engine needs. A kernel at
// or above an opcode's minimum that says "unsupported" fails the test.
func TestProbe(t *testing.T) {
	fdtest.Check(t)
	p, err := ring.ProbeKernel()
	if err != nil {
		if errorsIs(err, unix.ENOSYS) || errorsIs(err, unix.EPERM) {
			t.Skipf("kernel refuses io_uring: %v", err)
		}
		t.Fatal(err)
	}
	for _, op := range []struct {
		name         string
		op           uint8
		major, minor int
	}{
		{"NOP", ring.IORING_OP_NOP, 5, 6},
		{"POLL_ADD", ring.IORING_OP_POLL_ADD, 5, 6},
		{"POLL_REMOVE", ring.IORING_OP_POLL_REMOVE, 5, 6},
		{"TIMEOUT", ring.IORING_OP_TIMEOUT, 5, 6},
		{"ASYNC_CANCEL", ring.IORING_OP_ASYNC_CANCEL, 5, 6},
		{"LINK_TIMEOUT", ring.IORING_OP_LINK_TIMEOUT, 5, 6},
		{"SPLICE", ring.IORING_OP_SPLICE, 5, 7},
		{"TEE", ring.IORING_OP_TEE, 5, 8},
	} {
		got := p.Supported(op.op)
		if !got && kernelAtLeast(t, op.major, op.minor) {
			t.Errorf("probe: IORING_OP_%s unsupported on a kernel >= %d.%d", op.name, op.major, op.minor)
		}
	}
	if p.LastOp() < ring.IORING_OP_SENDMSG_ZC && kernelAtLeast(t, 6, 1) {
		t.Errorf("LastOp %d on a kernel >= 6.1", p.LastOp())
	}
	if p.Supported(255) {
		t.Error("opcode 255 supported")
	}
	if len(p.Ops()) != int(p.LastOp())+1 {
		t.Errorf("%d ops for last op %d", len(p.Ops()), p.LastOp())
	}
	t.Logf("last op %d", p.LastOp())
}

// TestReadAndFilesUpdate: FILES_UPDATE ops fill a slot and empty it
// again, and READ reads a file, at an offset, by a plain descriptor and
// by the slot.
func TestReadAndFilesUpdate(t *testing.T) {
	fdtest.Check(t)
	r := newRing(t, 4, nil)
	data := randomBytes(t, 10000)
	src := tempFile(t, data)
	if err := r.RegisterFilesSparse(4); err != nil {
		t.Skipf("no registered-file table: %v", err)
	}
	update := func(slot int, fd int32) int32 {
		fds := []int32{fd}
		s := getSQE(t, r)
		s.PrepFilesUpdate(fds, slot)
		s.UserData = 9
		submit(t, r, 1)
		res := reap(t, r, 1)[0].Res
		runtime.KeepAlive(fds)
		return res
	}
	if res := update(2, int32(src.Fd())); res != 1 {
		t.Fatalf("FILES_UPDATE of slot 2: res %d, want 1", res)
	}
	for _, tc := range []struct {
		name  string
		fd    int32
		fixed bool
		off   int64
		n     int
		want  int32
	}{
		{"plain fd, at 0", int32(src.Fd()), false, 0, 4096, 4096},
		{"plain fd, past the middle", int32(src.Fd()), false, 8000, 4096, 2000},
		{"slot, at 100", 2, true, 100, 512, 512},
		{"slot, at EOF", 2, true, int64(len(data)), 100, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := make([]byte, tc.n)
			s := getSQE(t, r)
			s.PrepRead(tc.fd, buf, tc.off)
			if tc.fixed {
				s.Flags = ring.IOSQE_FIXED_FILE
			}
			s.UserData = 1
			submit(t, r, 1)
			c := reap(t, r, 1)[0]
			if c.Res != tc.want {
				t.Fatalf("READ res %d, want %d", c.Res, tc.want)
			}
			if !bytes.Equal(buf[:c.Res], data[tc.off:tc.off+int64(c.Res)]) {
				t.Fatal("READ put other bytes in the buffer")
			}
		})
	}
	if res := update(2, -1); res != 1 {
		t.Fatalf("FILES_UPDATE emptying slot 2: res %d, want 1", res)
	}
	s := getSQE(t, r)
	s.PrepRead(2, make([]byte, 10), 0)
	s.Flags = ring.IOSQE_FIXED_FILE
	s.UserData = 2
	submit(t, r, 1)
	if c := reap(t, r, 1)[0]; c.Res != -int32(unix.EBADF) {
		t.Fatalf("READ from an emptied slot: res %d, want -EBADF", c.Res)
	}
}

// TestFadvise: FADVISE passes its advice, range and descriptor to
// posix_fadvise(2): WILLNEED on a file succeeds, an advice the kernel
// does not know is refused (EINVAL), and a pipe is refused (ESPIPE).
func TestFadvise(t *testing.T) {
	fdtest.Check(t)
	r := newRing(t, 4, nil)
	f := tempFile(t, randomBytes(t, 3*os.Getpagesize()))
	pr, _ := pipe(t, 0)
	for _, tc := range []struct {
		name   string
		fd     int
		advice uint32
		want   int32
	}{
		{"file, WILLNEED", int(f.Fd()), unix.FADV_WILLNEED, 0},
		{"file, unknown advice", int(f.Fd()), 100, -int32(unix.EINVAL)},
		{"pipe, WILLNEED", pr, unix.FADV_WILLNEED, -int32(unix.ESPIPE)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := getSQE(t, r)
			s.PrepFadvise(int32(tc.fd), uint64(os.Getpagesize()), uint32(os.Getpagesize()), tc.advice)
			s.UserData = 1
			submit(t, r, 1)
			if c := reap(t, r, 1)[0]; c.Res != tc.want {
				t.Fatalf("FADVISE res %d, want %d", c.Res, tc.want)
			}
		})
	}
}
