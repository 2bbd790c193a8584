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
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
	"golang.org/x/sys/unix"
)

var sizes = []int{0, 1, 64<<10 - 1, 64 << 10, 64<<10 + 1, 4 << 20}

// TestCopyPairs copies every size between every pair of descriptor kinds
// and checks the bytes (sha256), the count, and the file offsets.
func TestCopyPairs(t *testing.T) {
	fdtest.Check(t)
	pool := NewPool(0, 4)
	defer pool.Close()
	for _, sk := range srcKinds {
		for _, dk := range dstKinds {
			for _, size := range sizes {
				t.Run(fmt.Sprintf("%s-%s/%d", sk.name, dk.name, size), func(t *testing.T) {
					data := fdtest.Random(size)
					s := sk.make(t, data, false)
					d := dk.make(t)
					var (
						n       int64
						handled bool
						err     error
					)
					fdtest.Within(t, 20*time.Second, func() {
						n, handled, err = Copy(context.Background(), endOf(t, d.conn, false), endOf(t, s.conn, true), -1, pool)
					})
					s.wait()
					if !handled || err != nil || n != int64(size) {
						t.Fatalf("Copy = %d, %v, %v; want %d, true, nil", n, handled, err, size)
					}
					if f, ok := s.conn.(*os.File); ok && sk.name == "file" {
						if off := offset(t, f); off != int64(6+size) {
							t.Errorf("source offset %d, want %d", off, 6+size)
						}
					}
					if f, ok := d.conn.(*os.File); ok && dk.name == "file" {
						if off := offset(t, f); off != int64(size) {
							t.Errorf("destination offset %d, want %d", off, size)
						}
					}
					s.close()
					got := d.finish()
					if len(got) != size || sum(got) != sum(data) {
						t.Fatalf("got %d bytes (sha %x), want %d (sha %x)", len(got), sum(got), size, sum(data))
					}
				})
			}
		}
	}
	if st := pool.Stats(); st.InUse != 0 || st.Alive > 4 {
		t.Errorf("pool after the copies: %+v", st)
	}
}

// TestCopyLimit copies a prefix and leaves the rest where the next reader
// finds it.
func TestCopyLimit(t *testing.T) {
	fdtest.Check(t)
	for _, sk := range srcKinds {
		for _, dk := range []dstKind{dstKinds[0], dstKinds[1], dstKinds[3]} {
			for _, limit := range []int64{1, 64<<10 + 1, 1 << 20} {
				t.Run(fmt.Sprintf("%s-%s/%d", sk.name, dk.name, limit), func(t *testing.T) {
					data := fdtest.Random(2 << 20)
					s := sk.make(t, data, false)
					d := dk.make(t)
					var (
						n   int64
						err error
					)
					fdtest.Within(t, 20*time.Second, func() {
						n, _, err = Copy(context.Background(), endOf(t, d.conn, false), endOf(t, s.conn, true), limit, nil)
					})
					if err != nil || n != limit {
						t.Fatalf("Copy = %d, %v; want %d", n, err, limit)
					}
					// The rest is still there for the next reader.
					rest, err := io.ReadAll(s.conn.(io.Reader))
					if err != nil {
						t.Fatal(err)
					}
					s.wait()
					if !bytesEqual(rest, data[limit:]) {
						t.Errorf("rest: got %d bytes, want %d", len(rest), len(data)-int(limit))
					}
					s.close()
					if got := d.finish(); !bytesEqual(got, data[:limit]) {
						t.Errorf("got %d bytes, want %d", len(got), limit)
					}
				})
			}
		}
	}
}

func bytesEqual(a, b []byte) bool { return len(a) == len(b) && sum(a) == sum(b) }

// TestCopyAppendNotHandled: the kernel refuses O_APPEND destinations; Copy
// says so before any byte moves.
func TestCopyAppendNotHandled(t *testing.T) {
	fdtest.Check(t)
	for _, sk := range srcKinds {
		t.Run(sk.name, func(t *testing.T) {
			data := fdtest.Random(100 << 10)
			s := sk.make(t, data, false)
			f := tempFile(t, []byte("x"))
			af, err := os.OpenFile(f.Name(), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer af.Close()
			n, handled, err := Copy(context.Background(), endOf(t, af, false), endOf(t, s.conn, true), -1, nil)
			if handled || n != 0 || err != nil {
				t.Fatalf("Copy = %d, %v, %v; want 0, false, nil", n, handled, err)
			}
			rest, _ := io.ReadAll(s.conn.(io.Reader))
			s.wait()
			if !bytesEqual(rest, data) {
				t.Errorf("source lost bytes: %d left of %d", len(rest), len(data))
			}
			s.close()
		})
	}
}

// TestCopyNotSpliceable: a directory is no stream: not handled.
func TestCopyNotSpliceable(t *testing.T) {
	fdtest.Check(t)
	d, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if n, handled, err := Copy(context.Background(), endOf(t, w, false), endOf(t, d, true), -1, nil); handled || n != 0 || err != nil {
		t.Fatalf("Copy = %d, %v, %v; want 0, false, nil", n, handled, err)
	}
}

// TestCopyCloseMidCopy closes either end from another goroutine while the
// copy waits on it: the copy ends promptly with an error.
func TestCopyCloseMidCopy(t *testing.T) {
	fdtest.Check(t)
	for _, sk := range srcKinds[1:] { // an idle source: the copy waits to read
		for _, dk := range dstKinds {
			t.Run("src-"+sk.name+"-"+dk.name, func(t *testing.T) {
				s := sk.make(t, fdtest.Random(1000), true)
				d := dk.make(t)
				errc := make(chan error, 1)
				go func() {
					_, _, err := Copy(context.Background(), endOf(t, d.conn, false), endOf(t, s.conn, true), -1, nil)
					errc <- err
				}()
				time.Sleep(20 * time.Millisecond)
				s.conn.(io.Closer).Close()
				select {
				case err := <-errc:
					if !errors.Is(err, os.ErrClosed) && !errors.Is(err, net.ErrClosed) {
						t.Fatalf("Copy = %v after its source was closed, want os.ErrClosed or net.ErrClosed", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("Copy did not end after its source was closed")
				}
				s.close()
				s.wait()
				d.finish()
			})
		}
	}
	// A destination nobody reads: the copy waits to write.
	for _, sk := range srcKinds {
		for _, dn := range []string{"pipe", "fifo", "tcp", "unix"} {
			t.Run("dst-"+sk.name+"-"+dn, func(t *testing.T) {
				s := sk.make(t, fdtest.Random(16<<20), false)
				var w io.Closer
				var wc syscall.Conn
				switch dn {
				case "pipe":
					r, pw, _ := os.Pipe()
					defer r.Close()
					w, wc = pw, pw
				case "fifo":
					_, fw := fifo(t)
					w, wc = fw, fw
				default:
					a, _ := connPair(t, dn)
					w, wc = a, a.(syscall.Conn)
				}
				errc := make(chan error, 1)
				go func() {
					_, _, err := Copy(context.Background(), endOf(t, wc, false), endOf(t, s.conn, true), -1, nil)
					errc <- err
				}()
				time.Sleep(50 * time.Millisecond)
				w.Close()
				select {
				case err := <-errc:
					if !errors.Is(err, os.ErrClosed) && !errors.Is(err, net.ErrClosed) {
						t.Fatalf("Copy = %v after its destination was closed, want os.ErrClosed or net.ErrClosed", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("Copy did not end after its destination was closed")
				}
				s.close()
				s.wait()
			})
		}
	}
}

// TestCopyPipeReaderGoneMidway: a pipe destination whose reader goes
// away after the copy delivered bytes fails the copy with EPIPE, and
// every byte it did not deliver is either still in the source socket
// or reported (UndeliveredError), never read and dropped silently. A
// splice that meets the broken pipe fails at once and leaves the rest
// in the source (only a copy that has delivered nothing reads first, as
// io.Copy does, for a source at EOF to succeed); a splice from the
// socket may also answer 0 there, and the buffer round that follows
// reads before its write fails, and reports what it read.
func TestCopyPipeReaderGoneMidway(t *testing.T) {
	fdtest.Check(t)
	const total = 256 << 10
	data := fdtest.Random(total)
	a, peer := connPair(t, "unix")
	go func() {
		peer.Write(data)
		peer.(*net.UnixConn).CloseWrite()
	}()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	go func() {
		io.ReadFull(r, make([]byte, 16<<10)) // some bytes, then gone
		r.Close()
	}()
	var n int64
	fdtest.Within(t, 10*time.Second, func() {
		n, _, err = Copy(context.Background(), endOf(t, w, false), endOf(t, a.(syscall.Conn), true), -1, nil)
	})
	if !errors.Is(err, syscall.EPIPE) || n == 0 {
		t.Fatalf("Copy = %d, %v; want EPIPE after some bytes", n, err)
	}
	var lost int64
	if u := (*UndeliveredError)(nil); errors.As(err, &u) {
		lost = u.N
	}
	rest, rerr := io.ReadAll(a)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if n+lost+int64(len(rest)) != total || !bytes.Equal(rest, data[n+lost:]) {
		t.Fatalf("Copy = %d, %v; the source holds %d bytes: %d of %d unaccounted for",
			n, err, len(rest), total-n-lost-int64(len(rest)), total)
	}
}

// TestCopyPeerGone: a destination whose reader went away fails with
// EPIPE (pipes) or EPIPE/ECONNRESET (sockets), and errors.Is finds it.
func TestCopyPeerGone(t *testing.T) {
	fdtest.Check(t)
	for _, sk := range srcKinds {
		t.Run(sk.name+"-pipe", func(t *testing.T) {
			s := sk.make(t, fdtest.Random(1<<20), false)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			r.Close()
			var n int64
			fdtest.Within(t, 10*time.Second, func() {
				n, _, err = Copy(context.Background(), endOf(t, w, false), endOf(t, s.conn, true), -1, nil)
			})
			if !errors.Is(err, syscall.EPIPE) {
				t.Fatalf("Copy = %d, %v; want EPIPE", n, err)
			}
			s.close()
			s.wait()
		})
		t.Run(sk.name+"-tcp-reset", func(t *testing.T) {
			s := sk.make(t, fdtest.Random(8<<20), false)
			a, b := connPair(t, "tcp")
			b.(*net.TCPConn).SetLinger(0)
			go func() {
				buf := make([]byte, 4096)
				b.Read(buf) // once bytes flow, reset the connection
				b.Close()
			}()
			var (
				n   int64
				err error
			)
			fdtest.Within(t, 10*time.Second, func() {
				n, _, err = Copy(context.Background(), endOf(t, a.(syscall.Conn), false), endOf(t, s.conn, true), -1, nil)
			})
			if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
				t.Fatalf("Copy = %d, %v; want ECONNRESET or EPIPE", n, err)
			}
			s.close()
			s.wait()
		})
	}
}

// TestCopyResetAfterEmptySplice resets a TCP source between a splice
// that found it empty (EAGAIN) and the probe (recv MSG_PEEK) that checks
// that answer, as a peer that resets while the copy waits for input
// does. recv reports the reset and clears it, so that a read after it
// finds EOF: the copy must fail with the reset, not end as at the
// peer's EOF. The source is also shut down for writing first, as a
// relay's other direction leaves it once it has passed its EOF on.
func TestCopyResetAfterEmptySplice(t *testing.T) {
	fdtest.Check(t)
	for _, tc := range []struct {
		name     string
		dst      string // the network of the destination
		shutdown bool   // the source shut down for writing first
	}{
		{"to-unix", "unix", false},
		{"to-tcp", "tcp", false},
		{"to-unix-shutdown", "unix", true},
		{"to-tcp-shutdown", "tcp", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, peer := connPair(t, "tcp")
			if tc.shutdown {
				if err := a.(*net.TCPConn).CloseWrite(); err != nil {
					t.Fatal(err)
				}
			}
			if err := peer.(*net.TCPConn).SetLinger(0); err != nil {
				t.Fatal(err)
			}
			b, bpeer := connPair(t, tc.dst)
			out := drainConn(b, bpeer)
			dst, src := endOf(t, b.(syscall.Conn), false), endOf(t, a.(syscall.Conn), true)
			hooked := 0
			src.afterEmptySplice = func(fd int) {
				if hooked++; hooked == 1 {
					peer.Close() // SO_LINGER 0: a reset
					waitSocketError(fd)
				}
			}
			var (
				n   int64
				err error
			)
			fdtest.Within(t, 10*time.Second, func() {
				n, _, err = Copy(context.Background(), dst, src, -1, nil)
			})
			got := out.finish()
			if hooked == 0 {
				t.Fatal("no splice from the source answered EAGAIN")
			}
			if !errors.Is(err, syscall.ECONNRESET) || n != 0 || len(got) != 0 {
				t.Fatalf("Copy = %d, %v, the peer got %d bytes; want 0, ECONNRESET", n, err, len(got))
			}
		})
	}
}

// waitSocketError waits until the socket fd has an error pending
// (poll(2) reports POLLERR), which poll leaves pending.
func waitSocketError(fd int) {
	for {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(p, -1); err == nil && p[0].Revents&unix.POLLERR != 0 {
			return
		}
	}
}

// meteredPair returns a connected pair of network ("unix", or "tcp"
// with small buffers) and the End of a, its copy's destination, with a
// Meter counting what reaches a.
func meteredPair(t *testing.T, network string) (a, b net.Conn, d *End, met *atomic.Int64) {
	a, b = connPair(t, network)
	if tc, ok := a.(*net.TCPConn); ok {
		tc.SetWriteBuffer(64 << 10)
		b.(*net.TCPConn).SetReadBuffer(64 << 10)
	}
	met = new(atomic.Int64)
	d = endOf(t, a.(syscall.Conn), false)
	d.Meter = met
	return a, b, d, met
}

// TestCopySharedFileUnread reads from a file while a copy of it (file
// -> socket: through an intermediate pipe) holds bytes it read and has
// not delivered, then ends the copy (its peer closes, or its context is
// cancelled). The read takes the bytes past the copy's; the copy must
// not put its bytes back by moving the offset back over the read's, or
// the next read of the file delivers those again: it leaves the offset
// where the read did, and reports the bytes it lost.
func TestCopySharedFileUnread(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(4 << 20)
	for _, network := range []string{"unix", "tcp"} {
		for _, end := range []string{"peer-closed", "cancelled"} {
			t.Run(network+"/"+end, func(t *testing.T) {
				f := tempFile(t, data)
				_, b, d, met := meteredPair(t, network)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				type result struct {
					n   int64
					err error
				}
				done := make(chan result, 1)
				go func() {
					n, _, err := Copy(ctx, d, endOf(t, f, true), -1, nil)
					done <- result{n, err}
				}()
				// Until the copy holds bytes it read and did not
				// deliver: its peer reads nothing.
				var off int64
				for off <= met.Load() {
					runtime.Gosched()
					off, _ = f.Seek(0, io.SeekCurrent)
				}
				buf := make([]byte, 100)
				m, err := f.Read(buf)
				if err != nil || string(buf[:m]) != string(data[off:off+int64(m)]) {
					t.Fatalf("read at %d: (%d, %v), not the file's bytes there", off, m, err)
				}
				if end == "cancelled" {
					cancel()
				} else {
					b.Close()
				}
				r := <-done
				if r.err == nil || r.n > off {
					t.Fatalf("Copy = (%d, %v) after it read %d bytes", r.n, r.err, off)
				}
				if pos, _ := f.Seek(0, io.SeekCurrent); pos != off+int64(m) {
					t.Errorf("offset %d after the copy; the read left it at %d", pos, off+int64(m))
				}
			})
		}
	}
}

// TestCopyCancel cancels a copy waiting on an idle source and one waiting
// on a full destination.
func TestCopyCancel(t *testing.T) {
	fdtest.Check(t)
	for _, sk := range srcKinds[1:] {
		t.Run("idle-src-"+sk.name, func(t *testing.T) {
			s := sk.make(t, fdtest.Random(100), true)
			d := dstKinds[3].make(t)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			var n int64
			go func() {
				var err error
				n, _, err = Copy(ctx, endOf(t, d.conn, false), endOf(t, s.conn, true), -1, nil)
				errc <- err
			}()
			time.Sleep(30 * time.Millisecond)
			cancel()
			select {
			case err := <-errc:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Copy error %v, want context.Canceled", err)
				}
				if n != 100 {
					t.Errorf("written %d, want 100", n)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Copy did not end after cancel")
			}
			// The deadline Wake set is cleared again.
			if c, ok := s.conn.(net.Conn); ok {
				c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("read after the cancelled copy: %v", err)
				}
			}
			s.close()
			s.wait()
			if got := d.finish(); len(got) != 100 {
				t.Errorf("destination got %d bytes, want 100", len(got))
			}
		})
	}
	// File -> TCP nobody reads: the copy waits on dst with bytes in the
	// intermediate pipe; after cancel the file offset is just after the
	// bytes that reached dst.
	t.Run("full-dst-file-tcp", func(t *testing.T) {
		data := fdtest.Random(32 << 20)
		f := tempFile(t, data)
		a, b := connPair(t, "tcp")
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		var (
			n   int64
			err error
		)
		fdtest.Within(t, 10*time.Second, func() {
			n, _, err = Copy(ctx, endOf(t, a.(syscall.Conn), false), endOf(t, f, true), -1, nil)
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Copy = %d, %v; want DeadlineExceeded", n, err)
		}
		if off := offset(t, f); off != n {
			t.Errorf("file offset %d after %d bytes delivered", off, n)
		}
		a.Close()
		got, _ := io.ReadAll(b)
		if !bytesEqual(got, data[:n]) {
			t.Errorf("peer got %d bytes, Copy reported %d", len(got), n)
		}
	})
}

// TestCopyBlockingFds copies between descriptors in blocking mode, which
// the Go netpoller does not watch (os.NewFile of a blocking pipe).
func TestCopyBlockingFds(t *testing.T) {
	fdtest.Check(t)
	blockingPipe := func() (*os.File, *os.File) {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		return os.NewFile(uintptr(p[0]), "r"), os.NewFile(uintptr(p[1]), "w")
	}
	data := fdtest.Random(3<<20 + 7)
	t.Run("pipe-to-file", func(t *testing.T) {
		r, w := blockingPipe()
		defer r.Close()
		go func() {
			w.Write(data)
			w.Close()
		}()
		f := tempFile(t, nil)
		var n int64
		var err error
		fdtest.Within(t, 10*time.Second, func() {
			n, _, err = Copy(context.Background(), endOf(t, f, false), endOf(t, r, true), -1, nil)
		})
		got, _ := os.ReadFile(f.Name())
		if err != nil || n != int64(len(data)) || !bytesEqual(got, data) {
			t.Fatalf("Copy = %d, %v; file has %d bytes", n, err, len(got))
		}
	})
	t.Run("file-to-pipe-slow-reader", func(t *testing.T) {
		r, w := blockingPipe()
		f := tempFile(t, data)
		done := make(chan []byte)
		go func() {
			var got []byte
			buf := make([]byte, 8192)
			for {
				m, err := r.Read(buf)
				got = append(got, buf[:m]...)
				if err != nil {
					break
				}
				if len(got)%(1<<20) < 8192 {
					time.Sleep(time.Millisecond)
				}
			}
			r.Close()
			done <- got
		}()
		var n int64
		var err error
		fdtest.Within(t, 10*time.Second, func() {
			n, _, err = Copy(context.Background(), endOf(t, w, false), endOf(t, f, true), -1, nil)
		})
		w.Close()
		if got := <-done; err != nil || n != int64(len(data)) || !bytesEqual(got, data) {
			t.Fatalf("Copy = %d, %v; reader got %d bytes", n, err, len(got))
		}
	})
	t.Run("blocking-to-nonblocking-pipe", func(t *testing.T) {
		r, w := blockingPipe()
		defer r.Close()
		go func() {
			for i := 0; i < len(data); i += 100 << 10 {
				w.Write(data[i:min(i+100<<10, len(data))])
				time.Sleep(time.Millisecond)
			}
			w.Close()
		}()
		d := dstKinds[1].make(t)
		var n int64
		var err error
		fdtest.Within(t, 10*time.Second, func() {
			n, _, err = Copy(context.Background(), endOf(t, d.conn, false), endOf(t, r, true), -1, nil)
		})
		if got := d.finish(); err != nil || n != int64(len(data)) || !bytesEqual(got, data) {
			t.Fatalf("Copy = %d, %v; got %d bytes", n, err, len(got))
		}
	})
	t.Run("close-while-blocked", func(t *testing.T) {
		r, w := blockingPipe()
		defer w.Close()
		d := dstKinds[0].make(t)
		errc := make(chan error, 1)
		go func() {
			_, _, err := Copy(context.Background(), endOf(t, d.conn, false), endOf(t, r, true), -1, nil)
			errc <- err
		}()
		time.Sleep(20 * time.Millisecond)
		r.Close()
		select {
		case err := <-errc:
			if err == nil {
				t.Fatal("nil error after close")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Copy did not end after its blocking source was closed")
		}
		d.finish()
	})
}

// twoPipes returns two pipes of the default size, closed when the test
// ends.
func twoPipes(t *testing.T) (a, b *Pipe) {
	t.Helper()
	var err error
	if a, err = NewPipe(0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if b, err = NewPipe(0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b
}

// TestSpliceTeeWrappers checks the raw wrappers and their errno results.
func TestSpliceTeeWrappers(t *testing.T) {
	fdtest.Check(t)
	a, b := twoPipes(t)
	if _, err := unix.Write(a.WriteFd(), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if n, err := Tee(a.ReadFd(), b.WriteFd(), 100, FlagNonblock); n != 5 || err != nil {
		t.Fatalf("Tee = %d, %v", n, err)
	}
	if n, err := Splice(a.ReadFd(), nil, b.WriteFd(), nil, 100, FlagNonblock); n != 5 || err != nil {
		t.Fatalf("Splice = %d, %v", n, err)
	}
	buf := make([]byte, 20)
	if n, _ := unix.Read(b.ReadFd(), buf); string(buf[:n]) != "hellohello" {
		t.Fatalf("got %q", buf[:n])
	}
	if _, err := Splice(a.ReadFd(), nil, b.WriteFd(), nil, 100, FlagNonblock); err != syscall.EAGAIN {
		t.Fatalf("empty pipe: %v (%T), want EAGAIN as a syscall.Errno", err, err)
	}
	if _, err := Tee(a.ReadFd(), a.WriteFd(), 100, FlagNonblock); err != syscall.EINVAL {
		t.Fatalf("tee to itself: %v, want EINVAL", err)
	}
}

// TestSendfileCloseMidCopy closes either end of a Sendfile while it
// waits for a destination nobody reads (then, for a closed source, lets
// the peer read): it ends with an error matching os.ErrClosed or
// net.ErrClosed, as Copy's doc says, and a count equal to what the peer
// got.
func TestSendfileCloseMidCopy(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(16 << 20)
	for _, network := range []string{"unix", "tcp"} {
		for _, closed := range []string{"src", "dst"} {
			t.Run(network+"/"+closed, func(t *testing.T) {
				f := tempFile(t, data)
				a, b, d, met := meteredPair(t, network)
				type result struct {
					n       int64
					handled bool
					err     error
				}
				done := make(chan result, 1)
				go func() {
					n, handled, err := Sendfile(context.Background(), d, endOf(t, f, true), -1)
					done <- result{n, handled, err}
				}()
				for met.Load() == 0 {
					runtime.Gosched()
				}
				got := make(chan int64, 1)
				if closed == "src" {
					f.Close()
					go func() { n, _ := io.Copy(io.Discard, b); got <- n }()
				} else {
					a.Close()
				}
				r := <-done
				if !r.handled || (!errors.Is(r.err, os.ErrClosed) && !errors.Is(r.err, net.ErrClosed)) {
					t.Fatalf("Sendfile = (%d, %v, %v), want os.ErrClosed or net.ErrClosed", r.n, r.handled, r.err)
				}
				if closed == "src" {
					a.Close()
					if n := <-got; n != r.n {
						t.Errorf("Sendfile = %d, the peer got %d", r.n, n)
					}
				}
			})
		}
	}
}

// TestCopyInputAfterEmptySplice sends input to a socket source between
// a splice that found it empty (EAGAIN) and the check of that answer
// (direct: the poll of both sides; through a pipe: the probe), as a peer
// does that writes while the copy looks. Both say input is there, as
// they do at TCP's urgent mark; the copy must splice it, not take it for
// the mark and read it through the userspace buffer. Only EAGAIN again,
// with nothing moved in between, is the mark.
func TestCopyInputAfterEmptySplice(t *testing.T) {
	fdtest.Check(t)
	for _, tc := range []struct {
		src string // the network of the source
		dst dstKind
	}{
		{"tcp", dstKinds[1]},  // pipe: direct
		{"unix", dstKinds[1]}, // pipe: direct
		{"tcp", dstKinds[4]},  // unix: through a pipe
		{"unix", dstKinds[3]}, // tcp: through a pipe
	} {
		t.Run(tc.src+"-"+tc.dst.name, func(t *testing.T) {
			a, peer := connPair(t, tc.src)
			defer a.Close()
			defer peer.Close()
			d := tc.dst.make(t)
			msg := []byte("input that came after the splice")
			src := endOf(t, a.(syscall.Conn), true)
			hooked, readBytes := 0, 0
			src.afterEmptySplice = func(fd int) {
				if hooked++; hooked == 1 {
					if _, err := peer.Write(msg); err != nil {
						t.Error(err)
					}
					pollFd(fd, unix.POLLIN, -1)
				}
			}
			src.bufferRead = func(n int) { readBytes += n }
			dst := endOf(t, d.conn, false)
			dst.Meter = closeWriteAt{peer.(closeWriter), int64(len(msg)), new(atomic.Int64)}
			var (
				n   int64
				err error
			)
			fdtest.Within(t, 10*time.Second, func() {
				n, _, err = Copy(context.Background(), dst, src, -1, nil)
			})
			got := d.finish()
			if err != nil || n != int64(len(msg)) || !bytes.Equal(got, msg) {
				t.Fatalf("Copy = %d, %v, dst got %q; want %d, nil, %q", n, err, got, len(msg), msg)
			}
			if hooked == 0 {
				t.Fatal("no splice from the source answered EAGAIN")
			}
			if readBytes != 0 {
				t.Errorf("%d bytes went through the userspace buffer; want all spliced", readBytes)
			}
		})
	}
}

type closeWriter interface{ CloseWrite() error }

// closeWriteAt is a Meter that shuts c down for writing once the count
// reaches at: the source's peer ends its input once all of it arrived.
type closeWriteAt struct {
	c  closeWriter
	at int64
	n  *atomic.Int64
}

func (m closeWriteAt) Add(delta int64) int64 {
	n := m.n.Add(delta)
	if n-delta < m.at && n >= m.at {
		m.c.CloseWrite()
	}
	return n
}

// TestCopyUnixEOFUnread copies a unix stream socket to its end, into a
// pipe (direct) and into a socket (through a pipe): given as a unix
// socket (Info.Family), a splice's 0 ends the copy, with no read(2) to
// tell its end from TCP's urgent mark; not given so, or a TCP socket,
// the copy reads once at the end. (Through a pipe, the end after a
// short fill is found by the probe instead: the rows there copy
// nothing, so that the first splice finds the end.)
func TestCopyUnixEOFUnread(t *testing.T) {
	fdtest.Check(t)
	for _, tc := range []struct {
		src    string // the network of the source
		family bool   // the source's End says AF_UNIX
		dst    dstKind
		msg    string
		reads  int // read(2) calls of buffer rounds
	}{
		{"unix", true, dstKinds[1], "all of it, then the end", 0},
		{"unix", true, dstKinds[3], "", 0},
		{"unix", false, dstKinds[1], "all of it, then the end", 1},
		{"unix", false, dstKinds[3], "", 1},
		{"tcp", false, dstKinds[1], "all of it, then the end", 1},
		{"tcp", false, dstKinds[4], "", 1},
	} {
		t.Run(fmt.Sprintf("%s-family=%v-%s", tc.src, tc.family, tc.dst.name), func(t *testing.T) {
			a, peer := connPair(t, tc.src)
			defer a.Close()
			if _, err := peer.Write([]byte(tc.msg)); err != nil {
				t.Fatal(err)
			}
			peer.Close()
			d := tc.dst.make(t)
			src := endOf(t, a.(syscall.Conn), true)
			if tc.family {
				src.Info = Info{Mode: unix.S_IFSOCK, Flags: unix.O_NONBLOCK, Family: unix.AF_UNIX}
			}
			reads := 0
			src.bufferRead = func(int) { reads++ }
			var (
				n   int64
				err error
			)
			fdtest.Within(t, 10*time.Second, func() {
				n, _, err = Copy(context.Background(), endOf(t, d.conn, false), src, -1, nil)
			})
			if got := d.finish(); err != nil || n != int64(len(tc.msg)) || string(got) != tc.msg {
				t.Fatalf("Copy = %d, %v, dst got %q; want %d, nil, %q", n, err, got, len(tc.msg), tc.msg)
			}
			if reads != tc.reads {
				t.Errorf("%d reads through the buffer, want %d", reads, tc.reads)
			}
		})
	}
}
