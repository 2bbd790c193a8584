//go:build linux

package splice

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Adversarial tests of the copy at an urgent mark (TCP's MSG_OOB, and
// a unix stream socket's) since a splice that answered EAGAIN while
// input was there splices again first, and only EAGAIN after EAGAIN with
// nothing moved in between (againUnmoved) crosses the mark with a buffer
// round.

// adv33uStep is one thing the source's peer does: send data, send the
// byte oob with MSG_OOB (data nil, pause false), or, in a live script,
// wait until the copy delivered everything sent so far and check that
// it then sits parked (pause).
type adv33uStep struct {
	data  []byte
	oob   byte
	pause bool
}

func adv33uData(n int) adv33uStep { return adv33uStep{data: fdtest.Random(n)} }
func adv33uOOB(b byte) adv33uStep { return adv33uStep{oob: b} }

var adv33uPause = adv33uStep{pause: true}

// adv33uPair returns a connection of network (tcp, unix): the end the
// copy reads, with SO_OOBINLINE if inline, in blocking mode (an
// *os.File the netpoller does not watch) if blocking, and its peer.
func adv33uPair(t *testing.T, network string, inline, blocking bool) (syscall.Conn, net.Conn) {
	t.Helper()
	a, b := connPair(t, network)
	t.Cleanup(func() { a.Close(); b.Close() })
	rc, err := a.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) {
		if inline {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_OOBINLINE, 1)
		}
	})
	if serr != nil {
		t.Fatal(serr)
	}
	if !blocking {
		return a.(syscall.Conn), b
	}
	dup := -1
	rc.Control(func(fd uintptr) {
		if dup, serr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0); serr == nil {
			serr = unix.SetNonblock(dup, false)
		}
	})
	if serr != nil {
		t.Fatal(serr)
	}
	a.Close()
	f := os.NewFile(uintptr(dup), "blocking "+network)
	t.Cleanup(func() { f.Close() })
	return f, b
}

// adv33uFinish shuts the peer's write side (the copy's EOF) and, for
// TCP, waits until the FIN arrived at the copy's end a: every byte
// before it is there too.
func adv33uFinish(t *testing.T, a syscall.Conn, b net.Conn) {
	t.Helper()
	if err := b.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Error(err)
		return
	}
	rc, err := a.SyscallConn()
	if err != nil {
		t.Error(err)
		return
	}
	rc.Control(func(fd uintptr) {
		for !pollFd(int(fd), unix.POLLRDHUP, time.Second) {
		}
	})
}

// adv33uSend runs steps (no pause among them) on b.
func adv33uSend(t *testing.T, b net.Conn, steps []adv33uStep) {
	for _, s := range steps {
		var err error
		if s.data != nil {
			_, err = b.Write(s.data)
		} else {
			err = fdtest.SendOOBByte(b, s.oob)
		}
		if err != nil {
			t.Errorf("feeding the source: %v", err)
			return
		}
	}
}

// adv33uPacer grants at most step bytes a Take.
type adv33uPacer struct{ step int }

func (p adv33uPacer) Take(_ context.Context, max int) (int, error) { return min(max, p.step), nil }
func (adv33uPacer) Refund(int)                                     {}

// TestAdv33uUrgentSent copies from a TCP or unix stream socket whose
// peer sent data and urgent bytes (MSG_OOB) and shut down before the
// copy started, into a pipe (the direct loop) and into sockets (through
// a pool pipe, and through a pipe of the copy's own): the copy must
// deliver what io.Copy's read(2) loop delivers from the same sequence
// (the urgent byte left out unless SO_OOBINLINE; of marks in a row, all
// but the last one's byte are data), also from a source in blocking
// mode, paced, or up to a limit that ends at or just past a mark.
func TestAdv33uUrgentSent(t *testing.T) {
	fdtest.Check(t)
	d := adv33uData
	o := adv33uOOB
	scripts := []struct {
		name  string
		steps []adv33uStep
		limit func(before int) int64 // of the bytes before the first mark; nil: no limit
	}{
		{"first", []adv33uStep{o('!'), d(3000)}, nil},
		{"middle", []adv33uStep{d(5000), o('!'), d(7000)}, nil},
		{"last", []adv33uStep{d(5000), o('!')}, nil},
		{"only", []adv33uStep{o('!')}, nil},
		{"row", []adv33uStep{d(100), o('1'), o('2'), o('3'), d(100)}, nil},
		{"spread", []adv33uStep{d(10), o('1'), d(1), o('2'), d(20000), o('3'), d(1)}, nil},
		{"limit-at-mark", []adv33uStep{d(5000), o('!'), d(7000)}, func(before int) int64 { return int64(before) }},
		{"limit-past-mark", []adv33uStep{d(5000), o('!'), d(7000)}, func(before int) int64 { return int64(before + 1) }},
	}
	type variant struct {
		network  string
		dst      dstKind
		pool     bool
		inline   bool
		blocking bool
		paced    bool
	}
	var variants []variant
	for _, network := range []string{"tcp", "unix"} {
		for _, dk := range []dstKind{dstKinds[1], dstKinds[3], dstKinds[4]} {
			for _, inline := range []bool{false, true} {
				variants = append(variants,
					variant{network, dk, true, inline, false, false},
					variant{network, dk, false, inline, false, false},
					variant{network, dk, true, inline, true, false},
					variant{network, dk, true, inline, false, true})
			}
		}
	}
	if err := adv33uUnixOOB(t); err != nil {
		t.Logf("unix stream sockets skipped: MSG_OOB: %v", err)
	}
	for _, v := range variants {
		if v.network == "unix" && adv33uUnixOOB(t) != nil {
			continue
		}
		for _, sc := range scripts {
			name := fmt.Sprintf("%s->%s/pool=%v/inline=%v/blocking=%v/paced=%v/%s",
				v.network, v.dst.name, v.pool, v.inline, v.blocking, v.paced, sc.name)
			t.Run(name, func(t *testing.T) {
				// io.Copy's read(2) loop, from the same sequence.
				ra, rb := adv33uPair(t, v.network, v.inline, false)
				adv33uSend(t, rb, sc.steps)
				adv33uFinish(t, ra, rb)
				want, err := io.ReadAll(ra.(io.Reader))
				if err != nil {
					t.Fatal(err)
				}
				limit := int64(-1)
				if sc.limit != nil {
					limit = sc.limit(len(sc.steps[0].data))
					want = want[:limit]
				}
				a, b := adv33uPair(t, v.network, v.inline, v.blocking)
				adv33uSend(t, b, sc.steps)
				adv33uFinish(t, a, b)
				dd := v.dst.make(t)
				var pool *Pool
				if v.pool {
					pool = NewPool(DefaultPipeSize, 2)
					defer pool.Close()
				}
				src := endOf(t, a, true)
				if v.paced {
					src.Pacer = adv33uPacer{step: 777}
				}
				var n int64
				fdtest.Within(t, 20*time.Second, func() {
					n, _, err = Copy(context.Background(), endOf(t, dd.conn, false), src, limit, pool)
				})
				got := dd.finish()
				if err != nil || n != int64(len(want)) || !bytes.Equal(got, want) {
					t.Errorf("Copy = %d, %v, dst got %d bytes (%q...); io.Copy's loop: %d bytes (%q...)",
						n, err, len(got), adv33uTrunc(got), len(want), adv33uTrunc(want))
				}
			})
		}
	}
}

func adv33uTrunc(b []byte) []byte { return b[:min(len(b), 24)] }

// adv33uUnixOOB reports whether unix stream sockets take MSG_OOB
// (CONFIG_AF_UNIX_OOB, Linux 5.15).
func adv33uUnixOOB(t *testing.T) error {
	a, b := connPair(t, "unix")
	defer a.Close()
	defer b.Close()
	return fdtest.SendOOBByte(b, '!')
}

// TestAdv33uUrgentLive copies from a TCP or unix stream socket whose
// peer sends each urgent byte once the copy delivered everything before
// it (so that the copy sits at the mark, and a mark in a row follows a
// mark it reached: TCP then drops the first byte, for io.Copy too), and pauses where the copy has nothing to move but the urgent
// byte: it must deliver the data (and the urgent bytes only where
// SO_OOBINLINE), count them, and sit parked at the pauses, neither
// splicing again and again nor burning CPU.
func TestAdv33uUrgentLive(t *testing.T) {
	fdtest.Check(t)
	d := adv33uData
	o := adv33uOOB
	p := adv33uPause
	scripts := []struct {
		name  string
		steps []adv33uStep
	}{
		{"first", []adv33uStep{o('!'), p, d(3000)}},
		{"middle", []adv33uStep{d(5000), p, o('!'), p, d(7000), p}},
		{"end", []adv33uStep{d(5000), o('!'), p}},
		{"row", []adv33uStep{d(100), o('1'), o('2'), p, o('3'), d(100)}}, // tcp only
		{"big", []adv33uStep{d(300 << 10), o('!'), d(300 << 10), o('?'), p, d(1)}},
	}
	for _, network := range []string{"tcp", "unix"} {
		if network == "unix" && adv33uUnixOOB(t) != nil {
			continue
		}
		for _, dk := range []dstKind{dstKinds[1], dstKinds[3], dstKinds[4]} {
			for _, inline := range []bool{false, true} {
				for _, blocking := range []bool{false, true} {
					for _, sc := range scripts {
						if network == "unix" && sc.name == "row" {
							// A unix socket keeps the first urgent byte as
							// data unless a read passed it before the next
							// came: that depends on timing, for io.Copy too.
							continue
						}
						name := fmt.Sprintf("%s->%s/inline=%v/blocking=%v/%s", network, dk.name, inline, blocking, sc.name)
						t.Run(name, func(t *testing.T) {
							adv33uLive(t, network, dk, inline, blocking, sc.steps)
						})
					}
				}
			}
		}
	}
}

func adv33uLive(t *testing.T, network string, dk dstKind, inline, blocking bool, steps []adv33uStep) {
	a, b := adv33uPair(t, network, inline, blocking)
	dd := dk.make(t)
	pool := NewPool(DefaultPipeSize, 2)
	defer pool.Close()
	src := endOf(t, a, true)
	var empty atomic.Int64
	src.afterEmptySplice = func(int) { empty.Add(1) }
	m := new(countMeter)
	dst := endOf(t, dd.conn, false)
	dst.Meter = m
	var res copyResult
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		res.n, _, res.err = Copy(context.Background(), dst, src, -1, pool)
	}()
	var want []byte
	// await waits until dst has all sent so far, or the copy returned.
	await := func() bool {
		for m.load() < int64(len(want)) {
			select {
			case <-copied:
				return false
			case <-time.After(time.Millisecond):
			}
		}
		return true
	}
	fed := make(chan struct{})
	var feedErr error // the feeder's, read once fed is closed
	go func() {
		defer close(fed)
		for _, s := range steps {
			var err error
			switch {
			case s.pause:
				if !await() {
					return
				}
				feedErr = errors.Join(feedErr, adv33uParked(&empty, blocking))
				continue
			case s.data != nil:
				_, err = b.Write(s.data)
				want = append(want, s.data...)
			default:
				if !await() {
					return
				}
				err = fdtest.SendOOBByte(b, s.oob)
				if inline {
					want = append(want, s.oob)
				}
			}
			if err != nil {
				feedErr = errors.Join(feedErr, fmt.Errorf("feeding the source: %w", err))
				return
			}
		}
		b.(interface{ CloseWrite() error }).CloseWrite()
	}()
	fdtest.Within(t, 30*time.Second, func() {
		<-fed
		<-copied
	})
	if feedErr != nil {
		t.Error(feedErr)
	}
	got := dd.finish()
	if res.err != nil || res.n != int64(len(want)) || !bytes.Equal(got, want) {
		t.Errorf("Copy = %d, %v, dst got %d bytes (%q...); want %d bytes (%q...)",
			res.n, res.err, len(got), adv33uTrunc(got), len(want), adv33uTrunc(want))
	}
}

// adv33uParked checks, once the copy delivered all it was sent, that it
// sits parked, or returns what it found: over a while, no more than a few splices find the source
// empty (a blocking source's copy splices once each poll slice), and the
// process uses a small part of a CPU.
func adv33uParked(empty *atomic.Int64, blocking bool) error {
	const span = 100 * time.Millisecond
	time.Sleep(20 * time.Millisecond) // the copy reaches its wait
	e0, start := empty.Load(), time.Now()
	cpu, spin := fdtest.Spinning(span)
	e1, took := empty.Load(), time.Since(start)
	most := int64(2)
	if blocking {
		most += int64(took/blockingPoll) + 1
	}
	var err error
	if e1-e0 > most {
		err = fmt.Errorf("parked copy: %d splices found the source empty in %v; want at most %d", e1-e0, took, most)
	}
	if spin {
		err = errors.Join(err, fmt.Errorf("parked copy: the process used %v of CPU in %v", cpu, span))
	}
	return err
}

// TestAdv33uUrgentCancel cancels a copy that sits at an urgent mark with
// nothing after it (the copy parked on a source that polls unreadable,
// or, with SO_OOBINLINE, about to read the byte): it must return with
// the context's error, having counted the bytes before the mark.
func TestAdv33uUrgentCancel(t *testing.T) {
	fdtest.Check(t)
	for _, network := range []string{"tcp", "unix"} {
		if network == "unix" && adv33uUnixOOB(t) != nil {
			continue
		}
		for _, dk := range []dstKind{dstKinds[1], dstKinds[3]} {
			for _, blocking := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s->%s/blocking=%v", network, dk.name, blocking), func(t *testing.T) {
					a, b := adv33uPair(t, network, false, blocking)
					dd := dk.make(t)
					before := fdtest.Random(4000)
					if _, err := b.Write(before); err != nil {
						t.Fatal(err)
					}
					if err := fdtest.SendOOBByte(b, '!'); err != nil {
						t.Fatal(err)
					}
					m := new(countMeter)
					dst := endOf(t, dd.conn, false)
					dst.Meter = m
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					done := goCopy(ctx, dst, endOf(t, a, true), -1, nil)
					var res copyResult
					fdtest.Within(t, 20*time.Second, func() {
						for m.load() < int64(len(before)) {
							time.Sleep(time.Millisecond)
						}
						time.Sleep(20 * time.Millisecond)
						cancel()
						res = <-done
					})
					got := dd.finish()
					if !errors.Is(res.err, context.Canceled) || res.n != int64(len(before)) || !bytes.Equal(got, before) {
						t.Errorf("Copy = %d, %v, dst got %d bytes; want %d, context.Canceled", res.n, res.err, len(got), len(before))
					}
				})
			}
		}
	}
}

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
