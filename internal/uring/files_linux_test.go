package uring

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
	"github.com/pipes-go/pipes/splice"
)

// newOneSlotDriver is newTestDriver with eight pipes and a
// registered-file table of one slot, so that every second pin needs the
// slot the first holds.
func newOneSlotDriver(t *testing.T) *Driver {
	t.Helper()
	d, _ := newTestDriverWith(t, 8, 1, 0)
	if d.files.free == nil {
		t.Skip("the kernel refused a registered-file table")
	}
	return d
}

func rawConn(t *testing.T, f *os.File) syscall.RawConn {
	t.Helper()
	c, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSlotNotReusedInFlight pins a pipe into the one slot and submits a
// hardlinked chain naming it twice, POLL_ADD (waiting for bytes) then
// SPLICE from it: the SPLICE resolves the slot only when the poll
// completes. Meanwhile the caller closes its pipe, whose number another
// pipe then takes, and the test pins that other pipe, which must not get
// the slot: the chain still names it. Whether the chain completes or is
// cancelled, it must read only the first pipe's bytes, and the slot is
// free again once the chain is done and unpinned.
func TestSlotNotReusedInFlight(t *testing.T) {
	for _, cancel := range []bool{false, true} {
		d := newOneSlotDriver(t)
		r, w := testPipe(t)
		out, outW := testPipe(t)
		f, err := d.pin(rawConn(t, r))
		if err != nil || !f.fixed {
			t.Fatalf("pin = %+v, %v; want the slot", f, err)
		}
		var c chain
		c.reset(2)
		c.hardlink = true
		c.ops[0].prepPoll(f, unix.POLLIN)
		c.ops[1].prepSplice(f, -1, plain(int(outW.Fd())), 64)
		if err := d.submitChain(&c); err != nil {
			t.Fatal(err)
		}
		// The caller closes its number; another pipe takes it and is
		// pinned while the chain is in flight.
		rfd := r.Fd()
		r.Close()
		r2, w2 := testPipe(t)
		if r2.Fd() != rfd {
			t.Logf("descriptor %d not reused (got %d); the check still runs", rfd, r2.Fd())
		}
		w2.Write([]byte("other"))
		g, err := d.pin(rawConn(t, r2))
		if err != nil {
			t.Fatal(err)
		}
		if g.fixed {
			t.Fatalf("pin of another file got slot %d while a chain names it", g.n)
		}
		if cancel {
			d.cancelChain(&c)
		} else {
			w.Write([]byte("mine"))
		}
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			t.Fatal("chain not done after 5s")
		}
		d.unpin(g)
		d.unpin(f)
		outW.Close()
		got := make([]byte, 64)
		n, _ := out.Read(got)
		if want := map[bool]string{false: "mine", true: ""}[cancel]; string(got[:max(n, 0)]) != want {
			t.Fatalf("cancel=%v: the chain read %q, want %q (res %d, %d)", cancel, got[:max(n, 0)], want, c.ops[0].res, c.ops[1].res)
		}
		if h, err := d.pin(rawConn(t, r2)); err != nil || !h.fixed {
			t.Fatalf("pin after the chain = %+v, %v; want the slot back", h, err)
		} else {
			d.unpin(h)
		}
	}
}

// TestCopyReadsOneSlot runs concurrent CopyReads of different files on a
// table of one slot: the slot is taken, emptied and retaken, the other
// copies pin with duplicates, and every destination holds its own file.
func TestCopyReadsOneSlot(t *testing.T) {
	d := newOneSlotDriver(t)
	const copies = 8
	type result struct {
		i   int
		got []byte
		err error
	}
	results := make(chan result, copies)
	datas := make([][]byte, copies)
	for i := range datas {
		datas[i] = bytes.Repeat([]byte{byte('a' + i)}, 200<<10+i)
		src := testFile(t, datas[i])
		skipUnlessMayRead(t, src)
		pr, pw := testPipe(t)
		go func() {
			got := make(chan []byte)
			go func() { b, _ := io.ReadAll(pr); got <- b }()
			_, handled, err := d.CopyReads(t.Context(), &splice.End{Conn: rawConn(t, pw), Pipe: true}, File{Conn: rawConn(t, src), Size: int64(len(datas[i]))}, -1, nil)
			if !handled {
				err = errors.New("not handled")
			}
			pw.Close()
			results <- result{i, <-got, err}
		}()
	}
	for range copies {
		r := <-results
		if r.err != nil || !bytes.Equal(r.got, datas[r.i]) {
			t.Errorf("copy %d: err %v, got %d bytes (equal %v)", r.i, r.err, len(r.got), bytes.Equal(r.got, datas[r.i]))
		}
	}
}

// testFile writes data to a new file and opens it, its pages dropped from
// the page cache (fsync, POSIX_FADV_DONTNEED; a no-op on tmpfs), so that
// its reads go to the ring.
func testFile(t *testing.T, data []byte) *os.File {
	t.Helper()
	f := fdtest.TempFile(t, data)
	fdtest.Evict(t, f)
	return f
}

// TestCopyReadsNoDescriptorLeft runs CopyReads where a pin must be a
// duplicate (no registered-file table) and the process has no descriptor
// left for one (RLIMIT_NOFILE at the highest one open): the copy needs
// no new descriptor on the other paths, so it must not fail with EMFILE
// but report that it did not handle the pair, with nothing moved.
func TestCopyReadsNoDescriptorLeft(t *testing.T) {
	d, _ := newTestDriver(t) // no table: every pin is a duplicate
	data := fdtest.Random(200 << 10)
	copyReads := func() (int64, bool, error) {
		f := fdtest.TempFile(t, data)
		skipUnlessMayRead(t, f)
		r, w := testPipe(t)
		go io.Copy(io.Discard, r)
		defer w.Close()
		return d.CopyReads(context.Background(), &splice.End{Conn: rawConn(t, w), Pipe: true}, File{Conn: rawConn(t, f), Size: int64(len(data))}, -1, nil)
	}
	if n, handled, err := copyReads(); !handled || err != nil || n != int64(len(data)) {
		t.Fatalf("CopyReads = (%d, %v, %v), want (%d, true, nil)", n, handled, err, len(data))
	}
	// The pool now holds a pipe; the next copy's pin is the one
	// descriptor it needs.
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Skip(err)
	}
	f := fdtest.TempFile(t, data)
	r, w := testPipe(t)
	go io.Copy(io.Discard, r)
	defer w.Close()
	src, dst := rawConn(t, f), rawConn(t, w)
	lim := old
	lim.Cur = uint64(max(r.Fd(), w.Fd(), f.Fd())) + 1
	for fd := range lim.Cur { // no descriptor free below the limit
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			lim.Cur = fd
			break
		}
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Skip(err)
	}
	n, handled, err := d.CopyReads(context.Background(), &splice.End{Conn: dst, Pipe: true}, File{Conn: src, Size: int64(len(data))}, -1, nil)
	unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	if err != nil || (handled && n != int64(len(data))) || (!handled && n != 0) {
		t.Errorf("CopyReads with no descriptor left = (%d, %v, %v), want (%d, true, nil) or (0, false, nil)", n, handled, err, len(data))
	}
	if off, _ := f.Seek(0, io.SeekCurrent); off != n {
		t.Errorf("offset %d after %d bytes", off, n)
	}
}
