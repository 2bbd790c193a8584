package splice

import (
	"bytes"
	"context"
	"errors"
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

// TestDrain fills a pipe with a write of the test's own, as a caller's
// splice would, and drains it into a destination that takes everything
// (its peer reads while the pipe holds more than the socket buffer, so dst
// runs out of room and Drain waits: on the netpoller; inside splice(2)
// for a blocking socket, or in poll(2) slices when a send timeout makes
// it answer EAGAIN), one whose context ends while Drain waits, one whose
// context ended before, one whose peer is gone (EPIPE) and one already
// closed. Every case checks Drain's contract: written counts the
// bytes that reached dst (and the Meter's), p.Buffered() those still in
// p, and the two add up to n.
func TestDrain(t *testing.T) {
	fdtest.Check(t)
	// A dst is the End to drain into and a reader of its peer, which
	// returns what reached the peer once dst is closed.
	type dst struct {
		end  *End
		peer func() []byte
	}
	readPeer := func(b io.Reader) func() []byte { return readPeerAfter(b, nil) }
	blockingPair := func(t *testing.T) (a, b *os.File) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		a, b = os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, b
	}
	for _, tc := range []struct {
		name string
		dst  func(t *testing.T) (dst, func())
		ctx  func(t *testing.T, d dst) context.Context
		// all: every byte must reach dst; else the error wanted.
		all     bool
		wantErr func(err error) bool
	}{
		{
			name: "socket, peer reading",
			dst: func(t *testing.T) (dst, func()) {
				a, b := connPair(t, "unix")
				return dst{endOf(t, a.(syscall.Conn), false), readPeer(b)}, func() { a.Close() }
			},
			all: true,
		},
		{
			name: "blocking socket, peer reading",
			dst: func(t *testing.T) (dst, func()) {
				a, b := blockingPair(t)
				return dst{endOf(t, a, false), readPeer(b)}, func() { a.Close() }
			},
			all: true,
		},
		{
			name: "blocking socket with a send timeout, peer reading late",
			dst: func(t *testing.T) (dst, func()) {
				a, b := blockingPair(t)
				end := endOf(t, a, false)
				restore := BoundBlocking(end.Conn, unix.SO_SNDTIMEO)
				// The peer starts reading a few poll slices late: dst
				// stays full longer than its send timeout, so splice
				// answers EAGAIN and Drain waits in poll(2).
				return dst{end, readPeerAfter(b, time.After(4*blockingPoll))}, func() { restore(); a.Close() }
			},
			all: true,
		},
		{
			name: "full socket, context ends",
			dst: func(t *testing.T) (dst, func()) {
				a, _ := connPair(t, "unix") // the peer never reads
				return dst{end: endOf(t, a.(syscall.Conn), false)}, func() { a.Close() }
			},
			ctx: func(t *testing.T, d dst) context.Context {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				t.Cleanup(cancel)
				stop := context.AfterFunc(ctx, d.end.Wake) // Drain does not call Wake
				t.Cleanup(func() { stop() })
				return ctx
			},
			wantErr: func(err error) bool { return errors.Is(err, context.DeadlineExceeded) },
		},
		{
			name: "full socket, context ended before",
			dst: func(t *testing.T) (dst, func()) {
				a, _ := connPair(t, "unix") // the peer never reads
				return dst{end: endOf(t, a.(syscall.Conn), false)}, func() { a.Close() }
			},
			ctx: func(t *testing.T, d dst) context.Context {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx
			},
			wantErr: func(err error) bool { return errors.Is(err, context.Canceled) },
		},
		{
			name: "peer gone",
			dst: func(t *testing.T) (dst, func()) {
				a, b := connPair(t, "unix")
				b.Close()
				return dst{end: endOf(t, a.(syscall.Conn), false)}, func() { a.Close() }
			},
			wantErr: func(err error) bool {
				var se *os.SyscallError
				return errors.As(err, &se) && (errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET))
			},
		},
		{
			name: "closed dst",
			dst: func(t *testing.T) (dst, func()) {
				a, _ := connPair(t, "unix")
				end := endOf(t, a.(syscall.Conn), false)
				a.Close()
				return dst{end: end}, func() {}
			},
			wantErr: func(err error) bool { return errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPipe(1 << 20)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			data := fdtest.Random(p.Size())
			if n, err := syscall.Write(p.WriteFd(), data); err != nil || n != len(data) {
				t.Fatalf("filling the pipe: %d, %v", n, err)
			}
			d, closeDst := tc.dst(t)
			var meter atomic.Int64
			d.end.Meter = &meter
			ctx := context.Background()
			if tc.ctx != nil {
				ctx = tc.ctx(t, d)
			}
			n, err := Drain(ctx, d.end, p, len(data))
			closeDst()
			if n+int64(p.Buffered()) != int64(len(data)) || meter.Load() != n {
				t.Fatalf("Drain = (%d, %v), %d left, Meter %d: want written + left = %d, Meter = written", n, err, p.Buffered(), meter.Load(), len(data))
			}
			if !tc.all {
				if !tc.wantErr(err) {
					t.Fatalf("Drain = (%d, %v): not the error wanted", n, err)
				}
				return
			}
			if err != nil || n != int64(len(data)) {
				t.Fatalf("Drain = (%d, %v), want (%d, nil)", n, err, len(data))
			}
			if got := d.peer(); !bytes.Equal(got, data) {
				t.Fatalf("peer got %d bytes, not the %d drained", len(got), len(data))
			}
		})
	}
}

// readPeerAfter reads b until EOF or an error, from when start fires (at
// once when start is nil), and returns a function that waits for what it
// read.
func readPeerAfter(b io.Reader, start <-chan time.Time) func() []byte {
	got := make(chan []byte, 1)
	go func() {
		if start != nil {
			<-start
		}
		all, _ := io.ReadAll(b) // what was read before an error, too
		got <- all
	}()
	return func() []byte { return <-got }
}
