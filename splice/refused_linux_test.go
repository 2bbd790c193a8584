//go:build linux

package splice

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// directDst opens a new file O_DIRECT, at offset off, or skips where
// the file system refuses O_DIRECT.
func directDst(t *testing.T, off int64) *os.File {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "direct"), os.O_RDWR|os.O_CREATE|syscall.O_DIRECT, 0o600)
	if err != nil {
		t.Skipf("O_DIRECT: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	if off > 0 {
		if err := f.Truncate(off); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// spliceFromConn splices n bytes from the socket c into the pipe w: the
// pipe then holds the socket's pages, as the socket's buffers cut them,
// which an O_DIRECT file may refuse to take by splice (EINVAL).
func spliceFromConn(t *testing.T, c net.Conn, w *os.File, n int) {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for n > 0 {
		var m int
		var e error
		rerr := rc.Read(func(fd uintptr) bool {
			m, e = Splice(int(fd), nil, int(w.Fd()), nil, n, FlagMove|FlagNonblock)
			return e != unix.EAGAIN
		})
		if rerr != nil || e != nil || m == 0 {
			t.Fatalf("splice socket -> pipe: %d, %v, %v", m, rerr, e)
		}
		n -= m
	}
}

// gauge is a Meter that closes reached once n bytes have arrived.
type gauge struct {
	n, at   int64
	reached chan struct{}
}

func (g *gauge) Add(d int64) int64 {
	g.at += d
	if g.at >= g.n && g.reached != nil {
		close(g.reached)
		g.reached = nil
	}
	return g.at
}

// TestCopyRefusedMidway copies into an O_DIRECT file bytes the kernel
// refuses to splice into it (a socket's pages, EINVAL) after they have
// left the source: through the intermediate pipe (socket -> pipe ->
// file), and directly from a pipe once earlier bytes went by splice.
// No byte may be lost: Copy writes them with write(2) and goes on in
// userspace, as io.Copy does; where write(2) fails too (an unaligned
// offset), the error says how many bytes left the source undelivered.
func TestCopyRefusedMidway(t *testing.T) {
	fdtest.Check(t)
	const size = 64<<10 + 4096
	for _, tc := range []struct {
		name string
		off  int64 // dst's offset
		pool bool
		fail bool // write(2) refuses it too
	}{
		{"socket/nil-pool", 0, false, false},
		{"socket/pool", 4096, true, false},
		{"socket/unaligned", 100, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fail {
				fdtest.DirectRefusesUnaligned(t)
			}
			data := fdtest.Random(size)
			f := directDst(t, tc.off)
			a, b := connPair(t, "unix")
			// All of it is in the socket before the copy starts: a fill
			// that found only part of it (a length no O_DIRECT write
			// takes) would make the outcome depend on timing.
			if _, err := b.Write(data); err != nil {
				t.Fatal(err)
			}
			b.(*net.UnixConn).CloseWrite()
			var pool *Pool
			if tc.pool {
				pool = NewPool(0, 2)
				defer pool.Close()
			}
			n, handled, err := Copy(context.Background(), endOf(t, f, false), endOf(t, a.(syscall.Conn), true), -1, pool)
			if !handled {
				t.Fatalf("Copy = %d, not handled, %v", n, err)
			}
			if !tc.fail {
				if n != size || err != nil {
					t.Fatalf("Copy = %d, %v; want %d, nil", n, err, size)
				}
				got, rerr := os.ReadFile(f.Name())
				if rerr != nil {
					t.Fatal(rerr)
				}
				if !bytesEqual(got[tc.off:], data) || offset(t, f) != tc.off+size {
					t.Errorf("file holds %d bytes, offset %d; want %d, %d", len(got), offset(t, f), tc.off+size, tc.off+size)
				}
				return
			}
			rest, _ := io.ReadAll(a)
			taken := size - len(rest)
			if n != 0 || !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), fmt.Sprintf(" %d bytes read from the source were not delivered", taken)) {
				t.Errorf("Copy = %d, %v; want 0, EINVAL, %d bytes not delivered", n, err, taken)
			}
		})
	}
	t.Run("pipe", func(t *testing.T) {
		// The pipe's first page goes by splice; the socket's pages after
		// it are refused.
		f := directDst(t, 0)
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer w.Close()
		a, b := connPair(t, "unix")
		data := fdtest.Random(3 * 4096)
		if _, err := w.Write(data[:4096]); err != nil {
			t.Fatal(err)
		}
		g := &gauge{n: 4096, reached: make(chan struct{})}
		reached := g.reached
		d := endOf(t, f, false)
		d.Meter = g
		done := make(chan result, 1)
		go func() {
			n, handled, err := Copy(context.Background(), d, endOf(t, r, true), -1, nil)
			done <- result{n, handled, err}
		}()
		select {
		case <-reached:
		case res := <-done:
			t.Fatalf("Copy returned before its first page: %+v", res)
		}
		// Two messages, two buffers of the socket: pages of lengths
		// an O_DIRECT file does not take (not multiples of its block).
		for _, m := range [][]byte{data[4096:5096], data[5096:]} {
			if _, err := b.Write(m); err != nil {
				t.Fatal(err)
			}
		}
		spliceFromConn(t, a, w, len(data)-4096)
		w.Close()
		res := <-done
		if res.n != int64(len(data)) || !res.handled || res.err != nil {
			t.Fatalf("Copy = %d, %v, %v; want %d, true, nil", res.n, res.handled, res.err, len(data))
		}
		got, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		if !bytesEqual(got, data) {
			t.Errorf("file holds %d bytes, not the %d copied", len(got), len(data))
		}
	})
}

// TestCopyRefusedMidwayBlockingPipe is the pipe case of
// TestCopyRefusedMidway with a source pipe in blocking mode (as a
// process's standard input may be), whose writer stays open: once the
// copy goes on in buffer rounds, it must still wait for input in poll(2)
// slices, so that the end of its context ends it. A read(2) of the empty
// pipe would block in the kernel until the writer wrote or closed.
func TestCopyRefusedMidwayBlockingPipe(t *testing.T) {
	fdtest.Check(t)
	f := directDst(t, 0)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r, w := os.NewFile(uintptr(p[0]), "r"), os.NewFile(uintptr(p[1]), "w")
	defer r.Close()
	defer w.Close()
	a, b := connPair(t, "unix")
	data := fdtest.Random(3 * 4096)
	if _, err := w.Write(data[:4096]); err != nil {
		t.Fatal(err)
	}
	g := &ticker{tick: make(chan struct{}, 1)}
	d := endOf(t, f, false)
	d.Meter = g
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan result, 1)
	go func() {
		n, handled, err := Copy(ctx, d, endOf(t, r, true), -1, nil)
		done <- result{n, handled, err}
	}()
	if res, ok := g.await(4096, done); !ok {
		t.Fatalf("Copy returned before its first page: %+v", res)
	}
	for _, m := range [][]byte{data[4096:5096], data[5096:]} {
		if _, err := b.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	spliceFromConn(t, a, w, len(data)-4096)
	if res, ok := g.await(int64(len(data)), done); !ok {
		t.Fatalf("Copy returned before the refused pages: %+v", res)
	}
	cancel() // the writer stays open, with nothing more to write
	select {
	case res := <-done:
		if res.n != int64(len(data)) || !res.handled || !errors.Is(res.err, context.Canceled) {
			t.Errorf("Copy = %d, %v, %v; want %d, true, context.Canceled", res.n, res.handled, res.err, len(data))
		}
	case <-time.After(10 * time.Second): // a hang guard, not a timing
		w.Close()
		<-done
		t.Fatal("Copy did not return once its context ended: blocked in read(2) of the source pipe")
	}
}

// result is what a Copy run in another goroutine returned.
type result struct {
	n       int64
	handled bool
	err     error
}

// ticker is a Meter that signals tick at every Add.
type ticker struct {
	at   atomic.Int64
	tick chan struct{}
}

func (g *ticker) Add(d int64) int64 {
	n := g.at.Add(d)
	select {
	case g.tick <- struct{}{}:
	default:
	}
	return n
}

// await waits until n bytes have arrived (ok) or the copy returned.
func (g *ticker) await(n int64, done <-chan result) (res result, ok bool) {
	for g.at.Load() < n {
		select {
		case <-g.tick:
		case res = <-done:
			return res, false
		}
	}
	return res, true
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
