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
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Adversarial tests of viaPipe's rounds since a drain that met a full
// destination no longer makes the next round wait for room before it
// fills (the only wait for room is inside the drain, holding the bytes
// dst has not taken): socket, file and pipe sources into sockets whose
// peers read slowly or not at all.

// adv23Source is the source of a copy into a socket: its End's
// descriptor, and rest, which returns what the copy left in it once the
// copy has returned (a fed source: only where it was not kept open).
type adv23Source struct {
	conn syscall.Conn
	rest func() []byte
}

// adv23Src returns a source of kind "file" (a regular file holding data,
// read from offset 0), "pipe", "unix" or "tcp" (fed with data by a
// goroutine, which then closes or shuts down the write side, unless
// keepOpen: feedFile, feedConn).
func adv23Src(t *testing.T, kind string, data []byte, keepOpen bool) adv23Source {
	t.Helper()
	rest := func(r io.Reader, wait func()) func() []byte {
		return func() []byte {
			b, err := io.ReadAll(r) // from where the copy left it
			wait()
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	switch kind {
	case "file":
		f := tempFile(t, data)
		return adv23Source{conn: f, rest: rest(f, func() {})}
	case "pipe":
		r, w := adv22Pipe(t, "pipe")
		s := feedFile(r, w, data, keepOpen)
		return adv23Source{conn: s.conn, rest: rest(r, s.wait)}
	case "unix", "tcp":
		a, b := connPair(t, kind)
		s := feedConn(a, b, data, keepOpen)
		return adv23Source{conn: s.conn, rest: rest(a, s.wait)}
	}
	t.Fatalf("unknown source kind %q", kind)
	return adv23Source{}
}

// adv23Sndbuf sets the SO_SNDBUF of the socket behind c to n.
func adv23Sndbuf(t *testing.T, c syscall.Conn, n int) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, n) }); err != nil || serr != nil {
		t.Fatalf("SO_SNDBUF: %v, %v", err, serr)
	}
}

// adv23Held waits for pool to have no pipe in use, and returns nil once
// it has none, or its Stats if it still has one after 5 s (a hang guard
// that tells what is held).
func adv23Held(pool *Pool) *PoolStats {
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := pool.Stats()
		switch {
		case st.InUse == 0:
			return nil
		case time.Now().After(deadline):
			return &st
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAdv23SlowPeerRounds: a copy into a socket whose peer reads in
// small pieces, so that drain after drain meets a full socket and the
// next round fills at once (no wait for room between rounds), delivers
// every byte once and in order, from a regular file, a pipe, a unix and
// a TCP socket, into TCP and unix sockets, non-blocking (the netpoller)
// and blocking (poll(2) slices), through a pool of one big or one small
// pipe, and gives the pool pipe back.
func TestAdv23SlowPeerRounds(t *testing.T) {
	fdtest.Check(t)
	const total = 1<<20 + 5
	for _, srcKind := range []string{"file", "pipe", "unix", "tcp"} {
		for _, network := range []string{"unix", "tcp"} {
			for _, blockingDst := range []bool{false, true} {
				for _, pipeSize := range []int{0, 64 << 10} {
					name := fmt.Sprintf("%s/%s/blocking-dst=%v/pipe=%d", srcKind, network, blockingDst, pipeSize)
					t.Run(name, func(t *testing.T) {
						pool := NewPool(pipeSize, 1)
						defer pool.Close()
						data := fdtest.Random(total)
						src := adv23Src(t, srcKind, data, false)
						end, peer := adv22Dst(t, network, blockingDst)
						adv23Sndbuf(t, end, 16<<10)
						got := fdtest.ReadInPieces(peer, 3000)
						var res copyResult
						fdtest.Within(t, 60*time.Second, func() {
							n, _, err := Copy(context.Background(), endOf(t, end, false), endOf(t, src.conn, true), -1, pool)
							res = copyResult{n, err}
						})
						end.(io.Closer).Close()
						peerGot := <-got
						if res.err != nil || res.n != total || !bytes.Equal(peerGot, data) {
							t.Fatalf("Copy = %d, %v; the peer got %d bytes (equal: %v); want %d", res.n, res.err, len(peerGot), bytes.Equal(peerGot, data), total)
						}
						if st := pool.Stats(); st.InUse != 0 {
							t.Fatalf("pool after the copy: %+v", st)
						}
					})
				}
			}
		}
	}
}

// TestAdv23StalledPeerEndsAccounting: a copy from a regular file, a
// unix or a TCP socket into a socket whose peer stopped reading (the
// copy waits for room inside a drain, with bytes in the pool pipe) is
// ended by its context, or by a write deadline set on dst from another
// goroutine (os.ErrDeadlineExceeded, as io.Copy's write would fail);
// every byte is then delivered (the peer reads exactly those), put
// back into the file (whose offset is just after the delivered bytes,
// with nothing reported undelivered), reported undelivered, or still
// in the socket, and the pool pipe is back.
func TestAdv23StalledPeerEndsAccounting(t *testing.T) {
	fdtest.Check(t)
	const total = 8 << 20
	for _, srcKind := range []string{"file", "unix", "tcp"} {
		for _, network := range []string{"unix", "tcp"} {
			for _, how := range []string{"cancel", "deadline"} {
				t.Run(srcKind+"/"+network+"/"+how, func(t *testing.T) {
					pool := NewPool(0, 1)
					defer pool.Close()
					data := fdtest.Random(total)
					src := adv23Src(t, srcKind, data, false)
					end, peer := connPair(t, network)
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					meter := new(countMeter)
					dstEnd := endOf(t, end.(syscall.Conn), false)
					dstEnd.Meter = meter
					done := goCopy(ctx, dstEnd, endOf(t, src.conn, true), -1, pool)
					var res copyResult
					fdtest.Within(t, 20*time.Second, func() {
						waitStuck(meter)
						if how == "cancel" {
							cancel()
						} else {
							end.SetWriteDeadline(time.Unix(1, 0))
						}
						res = <-done
					})
					want := error(context.Canceled)
					if how == "deadline" {
						want = os.ErrDeadlineExceeded
					}
					if !errors.Is(res.err, want) || res.n != meter.load() {
						t.Fatalf("Copy = %d, %v (the Meter counted %d); want %v", res.n, res.err, meter.load(), want)
					}
					if srcKind == "file" && adv22Lost(res.err) != 0 {
						t.Fatalf("Copy = %d, %v: bytes of a regular file reported undelivered, not put back", res.n, res.err)
					}
					end.Close()
					peerGot, _ := io.ReadAll(peer)
					adv22Account(t, data, res.n, res.err, src.rest(), peerGot)
					if st := pool.Stats(); st.InUse != 0 {
						t.Fatalf("pool after the copy: %+v", st)
					}
				})
			}
		}
	}
}

// TestAdv23CaughtUpSocketHoldsNoPipe: TestAdv22CaughtUpCopyHoldsNoPipe
// for socket sources and blocking destinations. A copy whose drains had
// to wait for room, and which has delivered all its source had (its
// writer open and quiet), holds no pool pipe: the round after the last
// drain fills at once, finds no input and gives the pipe back before it
// waits for input.
func TestAdv23CaughtUpSocketHoldsNoPipe(t *testing.T) {
	fdtest.Check(t)
	for _, srcKind := range []string{"pipe", "unix", "tcp"} {
		for _, blockingDst := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/blocking-dst=%v", srcKind, blockingDst), func(t *testing.T) {
				pool := NewPool(0, 1)
				defer pool.Close()
				end, peer := adv22Dst(t, "unix", blockingDst)
				adv23Sndbuf(t, end, 32<<10)
				const total = 256 << 10 // several socket buffers: drains wait
				data := fdtest.Random(total)
				src := adv23Src(t, srcKind, data, true)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				meter := new(countMeter)
				dstEnd := endOf(t, end, false)
				dstEnd.Meter = meter
				done := goCopy(ctx, dstEnd, endOf(t, src.conn, true), -1, pool)
				var peerGot []byte
				fdtest.Within(t, 20*time.Second, func() {
					// The peer reads only what the socket took each time
					// the copy is stuck, so that drains keep meeting a
					// full socket, and stops once all was delivered,
					// leaving the socket full.
					for {
						waitStuck(meter)
						if meter.load() == total {
							break
						}
						buf := make([]byte, meter.load()-int64(len(peerGot)))
						if _, err := io.ReadFull(peer, buf); err != nil {
							t.Error(err)
							return
						}
						peerGot = append(peerGot, buf...)
					}
					adv22Idle(pool) // caught up, waiting for input
				})
				cancel()
				var res copyResult
				fdtest.Within(t, 20*time.Second, func() { res = <-done })
				end.(io.Closer).Close()
				last, _ := io.ReadAll(peer)
				peerGot = append(peerGot, last...)
				if !errors.Is(res.err, context.Canceled) || res.n != total || !bytes.Equal(peerGot, data) {
					t.Fatalf("Copy = %d, %v; the peer got %d bytes (equal: %v); want %d, context.Canceled", res.n, res.err, len(peerGot), bytes.Equal(peerGot, data), total)
				}
				if st := pool.Stats(); st.InUse != 0 {
					t.Fatalf("pool after the copy: %+v", st)
				}
			})
		}
	}
}

// TestAdv23PacedSlowPeer: a paced socket -> socket copy into a peer that
// reads in small pieces (drains meet a full socket) reads exactly what
// its Pacer granted less what it refunded, delivers every byte once, and
// runs no Take with the pool pipe in use.
func TestAdv23PacedSlowPeer(t *testing.T) {
	fdtest.Check(t)
	const total = 1<<20 + 3
	for _, srcKind := range []string{"unix", "tcp", "file"} {
		for _, grant := range []int{4096, 70000, 3 << 20} {
			t.Run(fmt.Sprintf("%s/grant=%d", srcKind, grant), func(t *testing.T) {
				pool := NewPool(0, 1)
				defer pool.Close()
				data := fdtest.Random(total)
				src := adv23Src(t, srcKind, data, false)
				end, peer := connPair(t, "unix")
				adv23Sndbuf(t, end.(syscall.Conn), 16<<10)
				got := fdtest.ReadInPieces(peer, 2000)
				pacer := &adv22Pacer{grant: grant, pool: pool}
				srcEnd := endOf(t, src.conn, true)
				srcEnd.Pacer = pacer
				var res copyResult
				fdtest.Within(t, 30*time.Second, func() {
					n, _, err := Copy(context.Background(), endOf(t, end.(syscall.Conn), false), srcEnd, -1, pool)
					res = copyResult{n, err}
				})
				end.Close()
				peerGot := <-got
				if res.err != nil || res.n != total || !bytes.Equal(peerGot, data) {
					t.Fatalf("Copy = %d, %v; the peer got %d bytes (equal: %v); want %d", res.n, res.err, len(peerGot), bytes.Equal(peerGot, data), total)
				}
				pacer.mu.Lock()
				defer pacer.mu.Unlock()
				if pacer.granted-pacer.refunded != res.n {
					t.Errorf("the Pacer granted %d, got %d back: %d net, the copy read %d", pacer.granted, pacer.refunded, pacer.granted-pacer.refunded, res.n)
				}
				if pacer.heldPipe != 0 {
					t.Errorf("%d of %d Takes ran with a pool pipe in use", pacer.heldPipe, pacer.takes)
				}
			})
		}
	}
}

// TestAdv23UrgentRoundHoldsNoPipe: a TCP source's urgent mark makes a
// round go through the userspace buffer (splice answers EAGAIN, or 0,
// at the mark; read(2) steps over the urgent byte). The fill that met
// the mark took a pool pipe first; the buffer round then writes into a
// unix socket whose peer reads nothing, and waits for room. That wait
// must not hold the pool pipe, which is empty ("A copy holds a pipe only
// while the pipe has bytes or a fill is running"; "a stalled destination
// pins at most one pipe, and only while it holds bytes"): with a pool of
// one pipe, every other copy would go through userspace for as long as
// the peer does not read. Ended by its context, the copy accounts for
// every byte.
func TestAdv23UrgentRoundHoldsNoPipe(t *testing.T) {
	fdtest.Check(t)
	for _, blockingDst := range []bool{false, true} {
		t.Run(fmt.Sprintf("blocking-dst=%v", blockingDst), func(t *testing.T) {
			pool := NewPool(0, 1)
			defer pool.Close()
			a, b := connPair(t, "tcp")
			end, peer := adv22Dst(t, "unix", blockingDst)
			adv23Sndbuf(t, end, 4096) // far less than a buffer round
			// The bytes past the mark are far more than dst takes, and
			// fewer than a buffer round reads: that round holds them all.
			before, after := fdtest.Random(100), fdtest.Random(48<<10)
			sendUrgent(t, b.(*net.TCPConn), before, after)
			// Everything is in a's receive queue (acknowledged) before
			// the copy starts, so that the buffer round's read gets it.
			fdtest.Within(t, 20*time.Second, func() {
				for adv23Outq(t, b) > 0 {
					time.Sleep(time.Millisecond)
				}
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			meter := new(countMeter)
			dstEnd := endOf(t, end, false)
			dstEnd.Meter = meter
			done := goCopy(ctx, dstEnd, endOf(t, a.(syscall.Conn), true), -1, pool)
			var held *PoolStats
			fdtest.Within(t, 30*time.Second, func() {
				for meter.load() <= int64(len(before)) {
					time.Sleep(time.Millisecond) // bytes past the mark arrive
				}
				waitStuck(meter) // the buffer round waits for room
				held = adv23Held(pool)
			})
			cancel()
			var res copyResult
			fdtest.Within(t, 20*time.Second, func() { res = <-done })
			if held != nil {
				t.Errorf("the copy (%d bytes delivered) waits for room in dst holding the empty pool pipe: %+v", meter.load(), *held)
			}
			if !errors.Is(res.err, context.Canceled) || res.n != meter.load() {
				t.Fatalf("Copy = %d, %v (the Meter counted %d); want context.Canceled", res.n, res.err, meter.load())
			}
			end.(io.Closer).Close()
			peerGot, _ := io.ReadAll(peer)
			rest, rerr := io.ReadAll(a)
			if rerr != nil {
				t.Fatal(rerr)
			}
			adv22Account(t, append(before, after...), res.n, res.err, rest, peerGot)
			if st := pool.Stats(); st.InUse != 0 {
				t.Fatalf("pool after the copy: %+v", st)
			}
		})
	}
}

// adv23Outq returns the bytes the socket c has sent and the peer not
// acknowledged, or not sent yet.
func adv23Outq(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ierr error
	rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) })
	if ierr != nil {
		t.Fatal(ierr)
	}
	return n
}

// TestAdv23SharedSourceIdleHoldsNoPipe: two copies read one source at
// once (as in TestAdv22TwoCopiesOneSource), into sockets whose peers read
// everything, through a pool of two pipes; the source's writer stays
// open. Once every byte is delivered both copies wait for input, and
// neither may hold a pool pipe: the one parked on the netpoller holds
// src's read lock (Go's RawConn.Read keeps it while it waits), and the
// other waits for that lock in its next fill's Conn.Read, which it
// enters with the empty pipe of its last round unless it gives that
// back first.
func TestAdv23SharedSourceIdleHoldsNoPipe(t *testing.T) {
	fdtest.Check(t)
	for _, srcKind := range []string{"pipe", "unix"} {
		t.Run(srcKind, func(t *testing.T) {
			pool := NewPool(64<<10, 2)
			defer pool.Close()
			const total = 4 << 20
			data := fdtest.Random(total)
			src := adv23Src(t, srcKind, data, true)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			meters := []*countMeter{new(countMeter), new(countMeter)}
			done := make(chan copyResult, 2)
			var got [2]chan []byte
			for i := range 2 {
				end, peer := adv22Dst(t, "unix", false)
				got[i] = make(chan []byte, 1)
				go func() { b, _ := io.ReadAll(peer); got[i] <- b }()
				dstEnd := endOf(t, end, false)
				dstEnd.Meter = meters[i]
				go func() {
					n, _, err := Copy(ctx, dstEnd, endOf(t, src.conn, true), -1, pool)
					end.(io.Closer).Close()
					done <- copyResult{n, err}
				}()
			}
			var held *PoolStats
			fdtest.Within(t, 30*time.Second, func() {
				for meters[0].load()+meters[1].load() < total {
					time.Sleep(time.Millisecond)
				}
				held = adv23Held(pool)
			})
			cancel()
			var sum int64
			var hist, want [256]int64
			fdtest.Within(t, 20*time.Second, func() {
				for i := range 2 {
					res := <-done
					if !errors.Is(res.err, context.Canceled) {
						t.Errorf("Copy = %d, %v; want context.Canceled", res.n, res.err)
					}
					sum += res.n
					for _, c := range <-got[i] {
						hist[c]++
					}
				}
			})
			for _, c := range data {
				want[c]++
			}
			if held != nil {
				t.Errorf("both copies wait for input with %d pool pipes in use: %+v", held.InUse, *held)
			}
			if sum != total || hist != want {
				t.Fatalf("the copies wrote %d bytes together, of %d; the peers got the source's bytes: %v", sum, total, hist == want)
			}
		})
	}
}
