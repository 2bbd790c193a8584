//go:build linux

package splice

import (
	"context"
	"io"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestAdv22CaughtUpCopyHoldsNoPipe: a pipe -> socket copy that has
// delivered every byte its source had, and whose source is quiet (its
// writer open), holds no pool pipe, also where its last drain had to wait
// for room and left the socket too full to poll writable. The pool pipe
// is empty then: nothing moves through it, and the copy is as idle as
// one waiting for input ("Idle copies hold no pool pipe"; "A pooled pipe
// is held only while bytes move"). A pool of one pipe would otherwise be
// pinned by a copy with nothing to send, as long as its peer reads
// nothing, and every other copy of the pool go through userspace.
//
// Made deterministic on a unix stream socket: the source holds 3/2 of
// the socket's send buffer; the first drain fills the socket and waits;
// the peer then reads exactly what the socket took and stops, and the
// drain completes with the other half buffer, which leaves the socket
// above the quarter of its buffer unix_writable asks for.
func TestAdv22CaughtUpCopyHoldsNoPipe(t *testing.T) {
	fdtest.Check(t)
	pool := NewPool(0, 1)
	defer pool.Close()
	r, w := bigPipe(t)
	end, peer := connPair(t, "unix")
	var sndbuf int
	var err error
	rc, _ := end.(syscall.Conn).SyscallConn()
	rc.Control(func(fd uintptr) { sndbuf, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF) })
	if err != nil {
		t.Fatal(err)
	}
	total := sndbuf * 3 / 2
	data := fdtest.Random(total)
	if n, err := w.Write(data); err != nil || n != total { // the pipe holds it all
		t.Fatalf("Write = %d, %v", n, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	meter := new(countMeter)
	dstEnd := endOf(t, end.(syscall.Conn), false)
	dstEnd.Meter = meter
	done := make(chan error, 1)
	go func() {
		_, _, err := Copy(ctx, dstEnd, endOf(t, r, true), -1, pool)
		done <- err
	}()
	fdtest.Within(t, 20*time.Second, func() {
		// Each drain fills the socket and waits for room; the peer
		// then reads what the socket took, and no more, until the
		// drain completes (all but the last drain, normally the
		// first, fill the socket).
		var read int64
		for {
			before := meter.load()
			time.Sleep(20 * time.Millisecond)
			now := meter.load()
			if now == int64(total) {
				break
			}
			if now == 0 || now != before {
				continue
			}
			if _, err := io.ReadFull(peer, make([]byte, now-read)); err != nil {
				t.Error(err)
				return
			}
			read = now
		}
		// Every byte is in the socket, the source has no more: the
		// copy waits with nothing to send. It must not keep the pipe.
		adv22Idle(pool)
	})
	cancel()
	fdtest.Within(t, 20*time.Second, func() { <-done })
}
