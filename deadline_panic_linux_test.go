//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
	"golang.org/x/sys/unix"
)

// panicDeadlines is a TCP connection (its descriptor exposed, so that
// copies of it take the kernel paths) whose deadline setters panic with
// val when asked for a deadline in the past, as the package asks to wake
// a wait, after closing woke. Clearing a deadline (the zero time) works.
type panicDeadlines struct {
	*net.TCPConn
	val         string
	read, write bool // which setters panic
	woke        chan struct{}
	once        *sync.Once
}

func newPanicDeadlines(c *net.TCPConn, val string, read, write bool) panicDeadlines {
	return panicDeadlines{TCPConn: c, val: val, read: read, write: write, woke: make(chan struct{}), once: new(sync.Once)}
}

func (p panicDeadlines) wake(t time.Time) {
	if !t.IsZero() {
		p.once.Do(func() { close(p.woke) })
		panic(p.val)
	}
}

func (p panicDeadlines) SetReadDeadline(t time.Time) error {
	if p.read {
		p.wake(t)
	}
	return p.TCPConn.SetReadDeadline(t)
}

func (p panicDeadlines) SetWriteDeadline(t time.Time) error {
	if p.write {
		p.wake(t)
	}
	return p.TCPConn.SetWriteDeadline(t)
}

func (p panicDeadlines) SetDeadline(t time.Time) error {
	p.SetReadDeadline(t)
	return p.SetWriteDeadline(t)
}

// TestDeadlineSetterPanicReachesCaller: a deadline setter of the
// caller's that panics when a cancel (or Close) wakes a copy through it
// runs in a goroutine of the package's (context.AfterFunc), or in Close
// for a copy of another caller's: its panic reaches the call whose end
// it is, in the caller's goroutine, as a panic of that end's Read or
// Write does, and Close returns. Before, it ended the process from the
// AfterFunc's goroutine, and escaped from Engine.Close, leaving the
// engine half closed.
//
// The setter panics instead of waking the wait, so each case ends the
// wait itself once the setter has run: it closes the end's peer (or,
// for a destination that waits for room, drains it).
func TestDeadlineSetterPanicReachesCaller(t *testing.T) {
	const val = "SetDeadline"
	// fanOut is a case of a FanOut from src into the end that panics
	// (a destination waiting for room in c) and others.
	fanOut := func(src func(*testing.T) io.Reader, others ...io.Writer) func(t *testing.T, e *Engine, c, peer *net.TCPConn) func() any {
		return func(t *testing.T, e *Engine, c, peer *net.TCPConn) func() any {
			ctx, cancel := context.WithCancel(context.Background())
			end := newPanicDeadlines(c, val, false, true)
			dsts := append([]io.Writer{end}, others...)
			got := inCaller(func() { e.FanOut(ctx, src(t), dsts) })
			return func() any {
				waitSent(t, c)
				cancel()
				<-end.woke
				go io.Copy(io.Discard, peer)
				return <-got
			}
		}
	}
	cases := []struct {
		name string
		// run starts the call on e with the end that panics (made from
		// c, whose peer is peer), and returns a function that ends
		// the call (cancel, Close) and returns what the caller's
		// goroutine recovered.
		run func(t *testing.T, e *Engine, c, peer *net.TCPConn) (recovered func() any)
	}{
		{"CopyContext/source", func(t *testing.T, e *Engine, c, peer *net.TCPConn) func() any {
			ctx, cancel := context.WithCancel(context.Background())
			end := newPanicDeadlines(c, val, true, false)
			got := inCaller(func() { e.CopyContext(ctx, io.Discard, end) })
			return func() any {
				waitInFlight(t, e, 1)
				cancel()
				<-end.woke
				peer.Close()
				return <-got
			}
		}},
		{"Copy/source, Close", func(t *testing.T, e *Engine, c, peer *net.TCPConn) func() any {
			end := newPanicDeadlines(c, val, true, false)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			closeAtEnd(t, r, w)
			got := inCaller(func() { e.Copy(w, end) })
			return func() any {
				// Once a byte went through, the copy waits in its
				// loop: it has joined the engine's group.
				if _, err := peer.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(r, make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
				closed := make(chan any, 1)
				go func() {
					defer func() { closed <- recover() }()
					e.Close()
				}()
				<-end.woke
				peer.Close()
				if p := <-closed; p != nil {
					t.Errorf("Close panicked with %v; the panic is the copy's", p)
				}
				return <-got
			}
		}},
		{"CopyBatch/source (its own goroutine)", func(t *testing.T, e *Engine, c, peer *net.TCPConn) func() any {
			ctx, cancel := context.WithCancel(context.Background())
			end := newPanicDeadlines(c, val, true, false)
			got := inCaller(func() { e.CopyBatch(ctx, []Pair{{Dst: io.Discard, Src: end}}) })
			return func() any {
				waitInFlight(t, e, 1)
				cancel()
				<-end.woke
				peer.Close()
				return <-got
			}
		}},
		{"FanOut/destination/kernel", fanOut(func(t *testing.T) io.Reader {
			return fdtest.TempFile(t, make([]byte, 64<<20)) // more than c takes unread
		})},
		{"FanOut/destination/userspace", fanOut(func(*testing.T) io.Reader {
			return bytes.NewReader(make([]byte, 64<<20))
		}, io.Discard)},
		{"Relay/a's read (the other goroutine)", func(t *testing.T, e *Engine, c, peer *net.TCPConn) func() any {
			ctx, cancel := context.WithCancel(context.Background())
			b, pb := tcpPair(t)
			closeAtEnd(t, b, pb)
			end := newPanicDeadlines(c, val, true, false)
			got := inCaller(func() { e.Relay(ctx, end, b) })
			return func() any {
				waitInFlight(t, e, 2)
				cancel()
				<-end.woke
				peer.Close()
				return <-got
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fdtest.Check(t)
			e, err := NewEngine()
			if err != nil {
				t.Fatal(err)
			}
			c, peer := tcpPair(t)
			closeAtEnd(t, c, peer)
			end := tc.run(t, e, c, peer)
			if got := end(); got != val {
				t.Errorf("the caller recovered %v; want the setter's panic %q", got, val)
			}
			closeWithin(t, e, 10*time.Second)
		})
	}
}

// inCaller runs call in a goroutine of its own, the caller's, and sends
// what it panicked with (nil if it returned).
func inCaller(call func()) <-chan any {
	got := make(chan any, 1)
	go func() {
		defer func() { got <- recover() }()
		call()
	}()
	return got
}

// waitInFlight waits until e has n copies in flight.
func waitInFlight(t *testing.T, e *Engine, n int64) {
	t.Helper()
	for e.Stats().InFlight != n {
		time.Sleep(time.Millisecond)
	}
}

// waitSent waits until c's send queue holds bytes its peer has not read:
// a copy into c then waits for room.
func waitSent(t *testing.T, c *net.TCPConn) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for {
		var n int
		var ierr error
		if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
			t.Fatal(err)
		}
		if ierr != nil {
			t.Fatal(ierr)
		}
		if n > 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
