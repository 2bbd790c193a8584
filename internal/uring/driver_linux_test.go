package uring

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
	"github.com/pipes-go/pipes/splice"
)

var errTestClosed = errors.New("test: driver closed")

// newTestDriver sets up a driver with a pool of two 64 KiB pipes, or
// skips where the kernel refuses io_uring.
func newTestDriver(t *testing.T) (*Driver, *Counters) {
	return newTestDriverWith(t, 2, 0, 0)
}

// newTestDriverWith is newTestDriver with pipes pool pipes, a
// registered-file table of files slots and Warmers reading warmChunk
// bytes at most (0: no Warmers).
func newTestDriverWith(t *testing.T, pipes int, files uint32, warmChunk int) (*Driver, *Counters) {
	t.Helper()
	fdtest.Check(t)
	pool := splice.NewPool(64<<10, pipes)
	st := new(Counters)
	d, err := New(Config{Entries: 8, IOWQMaxWorkers: 2, Pool: pool, Closed: errTestClosed, Files: files, WarmChunk: warmChunk}, st)
	if err != nil {
		pool.Close()
		t.Skipf("io_uring refused: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		pool.Close()
	})
	return d, st
}

func testPipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// TestChainCompletes submits a linked chain (POLL_ADD, then SPLICE from a
// pipe that has bytes) and checks each op's result and the state the
// chain ends in.
func TestChainCompletes(t *testing.T) {
	d, st := newTestDriver(t)
	r, w := testPipe(t)
	r2, w2 := testPipe(t)
	if _, err := w.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	var c chain
	c.reset(2)
	c.hardlink = true
	c.ops[0].prepPoll(plain(int(r.Fd())), unix.POLLIN)
	c.ops[1].prepSplice(plain(int(r.Fd())), -1, plain(int(w2.Fd())), 64)
	if err := d.submitChain(&c); err != nil {
		t.Fatal(err)
	}
	<-c.done
	if c.state != done || c.left != 0 {
		t.Errorf("chain state %d, %d ops left; want done, 0", c.state, c.left)
	}
	if c.ops[0].res&unix.POLLIN == 0 || c.ops[1].res != 5 {
		t.Errorf("results %d, %d; want POLLIN, 5", c.ops[0].res, c.ops[1].res)
	}
	b := make([]byte, 8)
	if n, _ := r2.Read(b); string(b[:n]) != "hello" {
		t.Errorf("pipe got %q", b[:n])
	}
	if st.SQEs.Load() < 2 || st.CQEs.Load() < 2 || st.Enters.Load() == 0 {
		t.Errorf("counters SQEs %d CQEs %d Enters %d", st.SQEs.Load(), st.CQEs.Load(), st.Enters.Load())
	}
}

// TestChainCancel cancels a hardlinked chain whose first op waits for
// ever (POLL_ADD on an empty pipe): the loop cancels it, the ops after it
// complete too, and the chain is done with every op answered.
func TestChainCancel(t *testing.T) {
	d, _ := newTestDriver(t)
	r, _ := testPipe(t)
	c := pollThenSplice(t, r)
	if err := d.submitChain(c); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.done:
		t.Fatal("chain done before any byte arrived")
	case <-time.After(20 * time.Millisecond):
	}
	d.cancelChain(c)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled chain not done after 5s")
	}
	if c.state != done {
		t.Errorf("chain state %d, want done", c.state)
	}
	if c.ops[0].res != -int32(unix.ECANCELED) {
		t.Errorf("poll result %d, want -ECANCELED", c.ops[0].res)
	}
	for i := range c.ops {
		if !c.ops[i].complete {
			t.Errorf("op %d has no result", i)
		}
	}
}

// TestSubmitAfterClose checks that a closing driver refuses chains with
// Config.Closed.
func TestSubmitAfterClose(t *testing.T) {
	pool := splice.NewPool(64<<10, 1)
	defer pool.Close()
	d, err := New(Config{Entries: 8, Pool: pool, Closed: errTestClosed}, new(Counters))
	if err != nil {
		t.Skipf("io_uring refused: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	var c chain
	c.reset(1)
	if err := d.submitChain(&c); err != errTestClosed {
		t.Errorf("submit after Close: %v, want %v", err, errTestClosed)
	}
}

// TestCopyReads copies a file into a pipe through CopyReads, whose reads
// (the file just written, so in the page cache) are served by splice(2),
// and checks the bytes, the offset left after them, and the counter.
func TestCopyReads(t *testing.T) {
	d, st := newTestDriver(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320000 bytes, several pipes' worth
	f := fdtest.TempFile(t, data)
	skipUnlessMayRead(t, f)
	fc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	r, w := testPipe(t)
	wc, err := w.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(r); got <- b }()
	n, handled, err := d.CopyReads(context.Background(), &splice.End{Conn: wc, Pipe: true}, File{Conn: fc, Size: int64(len(data))}, -1, nil)
	w.Close()
	if !handled || err != nil || n != int64(len(data)) {
		t.Fatalf("CopyReads = (%d, %v, %v), want (%d, true, nil)", n, handled, err, len(data))
	}
	if b := <-got; !bytes.Equal(b, data) {
		t.Errorf("pipe got %d bytes, want the %d written", len(b), len(data))
	}
	if off, _ := f.Seek(0, io.SeekCurrent); off != int64(len(data)) {
		t.Errorf("offset %d after the copy, want %d", off, len(data))
	}
	if st.CachedReads.Load() == 0 {
		t.Error("no read served from the page cache")
	}
}

// cancelMeter cancels a copy's context once the copy has delivered
// bytes.
type cancelMeter struct {
	n      atomic.Int64
	cancel context.CancelFunc
}

func (m *cancelMeter) Add(d int64) int64 {
	m.cancel()
	return m.n.Add(d)
}

// TestCopyReadsCancel cancels copies whose destination never waits
// (/dev/null, a regular file) after their first round: nothing wakes
// them, and their reads hit the page cache, so only the copy itself can
// see the end of its context. Each must stop with an error wrapping
// context.Canceled, short of the file, and count what it delivered.
func TestCopyReadsCancel(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: 16 of the test pool's pipes
	for _, tc := range []struct {
		name string
		open func(t *testing.T) *os.File
	}{
		{"dev-null", func(t *testing.T) *os.File {
			f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}},
		{"regular-file", func(t *testing.T) *os.File {
			f, err := os.Create(filepath.Join(t.TempDir(), "dst"))
			if err != nil {
				t.Fatal(err)
			}
			return f
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newTestDriver(t)
			f := fdtest.TempFile(t, data)
			skipUnlessMayRead(t, f)
			fc, err := f.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			dst := tc.open(t)
			defer dst.Close()
			dc, err := dst.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			m := &cancelMeter{cancel: cancel}
			n, handled, err := d.CopyReads(ctx, &splice.End{Conn: dc, Meter: m}, File{Conn: fc, Size: int64(len(data))}, -1, nil)
			if !handled || !errors.Is(err, context.Canceled) {
				t.Fatalf("CopyReads = (%d, %v, %v), want an error wrapping context.Canceled", n, handled, err)
			}
			if n <= 0 || n >= int64(len(data)) || n != m.n.Load() {
				t.Errorf("copied %d bytes (metered %d), want some of the %d, all metered", n, m.n.Load(), len(data))
			}
			if off, _ := f.Seek(0, io.SeekCurrent); off != n {
				t.Errorf("offset %d after the copy, want %d (the bytes delivered)", off, n)
			}
		})
	}
}

// pollThenSplice returns a hardlinked chain of two ops: a POLL_ADD for
// input on r, then a SPLICE of up to 64 bytes from r into a pipe of its
// own.
func pollThenSplice(t *testing.T, r *os.File) *chain {
	_, w := testPipe(t)
	c := new(chain)
	c.reset(2)
	c.hardlink = true
	c.ops[0].prepPoll(plain(int(r.Fd())), unix.POLLIN)
	c.ops[1].prepSplice(plain(int(r.Fd())), -1, plain(int(w.Fd())), 64)
	return c
}

// TestBrokenRingFullSQ breaks the ring under the driver while a pass of
// its loop has more chains to submit than the SQ holds (two SQEs): the
// ring's descriptor is replaced by /dev/null's, so io_uring_enter fails
// with an error it does not return in use. Every chain must fail with
// that error, and the driver must close, rather than the loop wait for
// room in an SQ that will never empty.
func TestBrokenRingFullSQ(t *testing.T) {
	fdtest.Check(t)
	pool := splice.NewPool(64<<10, 2)
	defer pool.Close()
	d, err := New(Config{Entries: 2, Pool: pool, Closed: errTestClosed}, new(Counters))
	if err != nil {
		t.Skipf("io_uring refused: %v", err)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if err := unix.Dup3(int(null.Fd()), d.r.Fd(), unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r, _ := testPipe(t) // never written: a POLL_ADD on it stays in flight
	chains := make([]*chain, 3)
	for i := range chains {
		c := new(chain)
		c.reset(2)
		c.ops[0].prepPoll(plain(int(r.Fd())), unix.POLLIN)
		c.ops[1].prepPoll(plain(int(r.Fd())), unix.POLLIN)
		chains[i] = c
	}
	// One pass of the loop takes them all: queued under one hold of
	// the lock.
	d.mu.Lock()
	for _, c := range chains {
		d.queueLocked(c)
	}
	d.mu.Unlock()
	d.poke()
	for i, c := range chains {
		select {
		case <-c.done:
		case <-time.After(time.Minute): // a hang guard, not a timing check
			t.Fatalf("chain %d not done a minute after the ring broke", i)
		}
		if res := c.ops[0].res; res >= 0 {
			t.Errorf("chain %d: first op's result %d, want an errno", i, res)
		}
	}
	if err := d.submitChain(new(chain)); err == nil {
		t.Error("a chain submitted after the ring broke was taken")
	}
	// A copy's pipe is not pooled once the ring has broken: an op of a
	// chain failed without its CQE may still write into it.
	cs, ok := d.begin(File{Conn: rawConn(t, r)})
	if !ok {
		t.Fatal("begin refused a pipe")
	}
	d.end(cs)
	if st := pool.Stats(); st.Idle != 0 {
		t.Errorf("the pipe went back to the pool after the ring broke: %+v", st)
	}
	if err := d.Close(); err != nil {
		t.Logf("Close: %v", err)
	}
}

// TestStalledKeepsWorkOff: while the loop's io_uring_enter has run for
// stalledEnter (a disk that stopped answering holds it), a Warmer grants
// a cold chunk without the ring reading it in, and CopyReads takes no
// copy; while as many SPLICEs as the ring has io-wq workers have been in
// flight that long, CopyReads takes no copy, and Warmers, whose READs
// need no such worker, read as before. Otherwise both use the ring.
func TestStalledKeepsWorkOff(t *testing.T) {
	const size = 8 << 20
	for _, c := range []struct {
		name        string
		stall       func(d *Driver) (undo func())
		warmerReads bool // the ring reads a Warmer's cold chunk in
		copyReads   bool // CopyReads takes a copy
	}{
		{"not stalled", nil, true, true},
		{"an enter under way", func(d *Driver) func() {
			d.entered.Store(1) // since the driver began
			return func() { d.entered.Store(0) }
		}, false, false},
		{"every worker held", func(d *Driver) func() {
			var held [2]chain
			for i := range held {
				d.splicingFrom(&held[i], 1) // since the driver began
			}
			return func() {
				for i := range held {
					d.splicingFrom(&held[i], 0)
				}
			}
		}, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, st := newTestDriverWith(t, 2, 1, DefaultWarmChunk) // two workers
			if d.workers != 2 {
				t.Skip("the kernel refused a worker cap (Linux 5.15)")
			}
			f := testFile(t, make([]byte, size))
			skipUnlessMayRead(t, f)
			if n := fdtest.CachedPages(t, f, size); n > 0 {
				t.Skipf("%d pages still in the page cache after POSIX_FADV_DONTNEED (tmpfs?)", n)
			}
			src := File{Conn: rawConn(t, f), Size: size}
			w, err := d.NewWarmer(src, -1)
			if err != nil || w == nil {
				t.Fatalf("NewWarmer = %v, %v", w, err)
			}
			defer w.Close()
			if c.stall != nil {
				time.Sleep(stalledEnter - time.Since(d.epoch))
				defer c.stall(d)()
			}
			if got := d.Stalled(); got != (c.stall != nil) {
				t.Fatalf("Stalled = %v; want %v", got, c.stall != nil)
			}
			if _, err := w.Take(context.Background(), size); err != nil {
				t.Fatal(err)
			}
			if read := st.Warms.Load() > 0; read != c.warmerReads {
				t.Errorf("the ring read a cold chunk in: %v; want %v", read, c.warmerReads)
			}
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			defer pw.Close()
			go io.Copy(io.Discard, pr)
			_, handled, err := d.CopyReads(context.Background(), &splice.End{Conn: rawConn(t, pw), Pipe: true}, src, 64<<10, nil)
			if err != nil {
				t.Fatal(err)
			}
			if handled != c.copyReads {
				t.Errorf("CopyReads took the copy: %v; want %v", handled, c.copyReads)
			}
		})
	}
}
