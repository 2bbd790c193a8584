//go:build linux

package splice

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestCopyUrgentIntoBlockingPipeHint: a TCP source with urgent data,
// whose peer has shut down, copied into a pipe in blocking mode given as
// End{Pipe: true} and no Info, whose reader reads nothing. A pipe side
// is not inspected up front; at the urgent mark splice answers 0 and a
// round goes through the userspace buffer, which wrote the bytes after
// the mark with one write(2) into the pipe: not known to be in blocking
// mode, it was not polled first, and the write waited in the kernel for
// room, where the end of the context never reached it. The copy must end
// with its context, having reported exactly the bytes the pipe took.
func TestCopyUrgentIntoBlockingPipeHint(t *testing.T) {
	fdtest.Check(t)
	a, b := connPair(t, "tcp")
	defer a.Close()
	defer b.Close()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r, w := os.NewFile(uintptr(p[0]), "r"), os.NewFile(uintptr(p[1]), "w")
	defer r.Close()
	defer w.Close()
	// Two slots: the bytes before the mark take one, and the splice at
	// the mark finds room (a full pipe would answer EAGAIN first).
	if _, err := unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 2*4096); err != nil {
		t.Fatal(err)
	}
	before, after := bytes.Repeat([]byte("x"), 100), bytes.Repeat([]byte("y"), 3*4096)
	sendUrgent(t, b.(*net.TCPConn), before, after)
	time.Sleep(20 * time.Millisecond) // everything, the FIN too, has arrived
	dst := endOf(t, w, false)
	if !dst.Pipe || dst.Info.Mode != 0 {
		t.Fatalf("destination End %+v: want the pipe hint and no Info", dst)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := &ticker{tick: make(chan struct{}, 1)}
	dst.Meter = g
	done := make(chan result, 1)
	go func() {
		n, handled, err := Copy(ctx, dst, endOf(t, a.(*net.TCPConn), true), -1, nil)
		done <- result{n, handled, err}
	}()
	if res, ok := g.await(int64(len(before)), done); !ok {
		t.Fatalf("Copy returned before the bytes ahead of the mark arrived: %+v", res)
	}
	time.Sleep(50 * time.Millisecond) // the copy waits for room in the pipe
	cancel()
	var res result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second): // a hang guard, not a timing
		go io.Copy(io.Discard, r)
		<-done
		t.Fatal("Copy did not return once its context ended: blocked in write(2) into the pipe")
	}
	if !res.handled || !errors.Is(res.err, context.Canceled) {
		t.Errorf("Copy = %d, %v, %v; want true, context.Canceled", res.n, res.handled, res.err)
	}
	w.Close()
	got, err := io.ReadAll(r)
	want := append(before, after...)
	if err != nil || int64(len(got)) != res.n || !bytes.Equal(got, want[:len(got)]) {
		t.Errorf("the pipe holds %d bytes (%v), the copy reports %d", len(got), err, res.n)
	}
}

// ledger is a Pacer that grants what is asked and keeps the account:
// bytes granted less bytes refunded.
type ledger struct{ net int }

func (l *ledger) Take(_ context.Context, n int) (int, error) { l.net += n; return n, nil }
func (l *ledger) Refund(n int)                               { l.net -= n }

// TestCopyRefusedRefundsGrant: a paced copy of a regular file whose
// first drain the destination refuses (pages at an offset an O_DIRECT
// file does not take) puts the bytes back into the file and is not
// handled; the grant it spent on them must go back to the Pacer too, or
// the caller's userspace copy of the same bytes pays for them twice.
func TestCopyRefusedRefundsGrant(t *testing.T) {
	fdtest.Check(t)
	const off = 100
	for _, pool := range []bool{false, true} {
		f := fdtest.TempFile(t, fdtest.Random(off+64<<10))
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		dst := directDst(t, 0)
		var p *Pool
		if pool {
			p = NewPool(0, 2)
			defer p.Close()
		}
		l := &ledger{}
		src := endOf(t, f, true)
		src.Pacer = l
		n, handled, err := Copy(context.Background(), endOf(t, dst, false), src, -1, p)
		if handled {
			t.Skipf("the kernel spliced pages at offset %d into an O_DIRECT file: (%d, %v)", off, n, err)
		}
		at, _ := f.Seek(0, io.SeekCurrent)
		if n != 0 || err != nil || at != off || l.net != 0 {
			t.Errorf("pool %v: Copy = (%d, not handled, %v), offset %d, %d bytes granted and not refunded; want 0, nil, %d, 0", pool, n, err, at, l.net, off)
		}
	}
}
