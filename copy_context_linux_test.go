//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// adv29Kinds are the sources the copy tests here read: a TCP and a unix
// socket (the kernel path) and a net.Pipe (userspace, deadlines only).
var adv29Kinds = []string{"tcp", "unix", "pipe"}

// adv29Within runs f and fails t if it does not return within 10 s.
func adv29Within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: did not return within 10 s", what)
	}
}

// TestAdv29CallerDeadlinesKept: a CopyContext whose ctx can end, but does
// not, leaves the caller's own deadlines as they were (only a cancelled
// copy loses them): the source's read deadline and the destination's
// write deadline, set in the future before the copy, still fire after it.
func TestAdv29CallerDeadlinesKept(t *testing.T) {
	fdtest.Check(t)
	const deadline = 300 * time.Millisecond
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, kind := range adv29Kinds {
			t.Run(ec.name+"/"+kind, func(t *testing.T) {
				a, pa := relayEnds[kind](t)
				b, pb := relayEnds["tcp"](t)
				data := relayData(100000, 1)
				go pa.Write(data)
				got := make(chan []byte, 1)
				go func() {
					x := make([]byte, len(data))
					k, _ := io.ReadFull(pb, x)
					got <- x[:k]
				}()
				a.(net.Conn).SetReadDeadline(time.Now().Add(deadline))
				b.(net.Conn).SetWriteDeadline(time.Now().Add(deadline))
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				n, err := e.CopyContext(ctx, b, &io.LimitedReader{R: a, N: int64(len(data))})
				if g := <-got; err != nil || n != int64(len(data)) || !bytes.Equal(g, data) {
					t.Fatalf("copy: n=%d err=%v, the peer got %d bytes", n, err, len(g))
				}
				// Nothing more comes: the read must end at the caller's
				// deadline, not wait forever.
				adv29Within(t, "read after the copy", func() {
					if _, err := a.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
						t.Errorf("read after the copy: %v, want the caller's deadline", err)
					}
				})
				// Nobody reads pb: the write must end at the caller's
				// deadline too.
				adv29Within(t, "write after the copy", func() {
					if _, err := b.Write(make([]byte, 32<<20)); !errors.Is(err, os.ErrDeadlineExceeded) {
						t.Errorf("write after the copy: %v, want the caller's deadline", err)
					}
				})
			})
		}
	}
}

// TestAdv29CancelRacesCompletion cancels CopyContext at moments around
// its completion. Whatever wins, the result is io.Copy's or a
// cancellation (never a short success), every byte counted reached the
// peer in order, the *io.LimitedReader's N is lowered by what was read,
// and the ends are left with no deadline: a plain io.Copy of the rest
// then completes.
func TestAdv29CancelRacesCompletion(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, kind := range adv29Kinds {
			t.Run(ec.name+"/"+kind, func(t *testing.T) {
				a, pa := relayEnds[kind](t)
				b, pb := relayEnds["tcp"](t)
				var cancelled int
				defer func() { t.Logf("%d of 150 copies cancelled", cancelled) }()
				for i := range 150 {
					data := relayData(1000+i*997, byte(i))
					go pa.Write(data)
					ctx, cancel := context.WithCancel(context.Background())
					go func() {
						time.Sleep(time.Duration(i%25) * 20 * time.Microsecond)
						cancel()
					}()
					lr := &io.LimitedReader{R: a, N: int64(len(data))}
					n, err := e.CopyContext(ctx, b, lr)
					cancel()
					switch {
					case err != nil && !errors.Is(err, context.Canceled):
						t.Fatalf("%d: n=%d err=%v", i, n, err)
					case err == nil && n != int64(len(data)):
						t.Fatalf("%d: a success with %d of %d bytes", i, n, len(data))
					}
					if err != nil {
						cancelled++
					}
					read := int64(len(data)) - lr.N
					// The kernel paths say how many they dropped; the
					// userspace path (net.Pipe) drops them as io.Copy
					// does, unreported.
					if u := undelivered(err); read < n || u != 0 && u != read-n {
						t.Fatalf("%d: N says %d bytes read, %d delivered, err %v", i, read, n, err)
					}
					// Bytes read and not delivered are dropped, as
					// io.Copy drops them: the peer gets the rest after
					// the prefix.
					want := append(append([]byte(nil), data[:n]...), data[read:]...)
					got := make(chan []byte, 1)
					go func() {
						x := make([]byte, len(want))
						k, _ := io.ReadFull(pb, x)
						got <- x[:k]
					}()
					adv29Within(t, "copying the rest", func() {
						if _, err := io.CopyN(b, a, lr.N); err != nil {
							t.Errorf("%d: copying the rest after the copy: %v", i, err)
						}
					})
					if g := <-got; !bytes.Equal(g, want) {
						t.Fatalf("%d: the peer got %d bytes, not the %d expected", i, len(g), len(want))
					}
				}
			})
		}
	}
}

// TestAdv29CloseRacesStart closes an engine at moments around the start
// of a CopyAsync, a Relay and a Copy on it, each waiting for a peer
// that stays silent: all three end, with errors wrapping ErrClosed,
// whichever came first.
func TestAdv29CloseRacesStart(t *testing.T) {
	fdtest.Check(t)
	for i := range 60 {
		e, err := NewEngine()
		if err != nil {
			t.Fatal(err)
		}
		a, pa := tcpPair(t)
		b, pb := tcpPair(t)
		c, pc := unixPair(t)
		d, pd := tcpPair(t)
		pa.Write([]byte("hello")) // read by the copy, then a wait
		var wg sync.WaitGroup
		var f *Future
		var relayErr, copyErr error
		wg.Add(3)
		go func() { defer wg.Done(); f = e.CopyAsync(context.Background(), b, a) }()
		go func() { defer wg.Done(); _, _, relayErr = e.Relay(context.Background(), c, d) }()
		go func() { defer wg.Done(); _, copyErr = e.Copy(pb, pc) }()
		time.Sleep(time.Duration(i%12) * 40 * time.Microsecond)
		adv29Within(t, "Close", func() { e.Close() })
		adv29Within(t, "the copies", wg.Wait)
		_, asyncErr := f.Wait()
		for what, err := range map[string]error{"CopyAsync": asyncErr, "Relay": relayErr, "Copy": copyErr} {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("%d: %s: %v, want ErrClosed", i, what, err)
			}
		}
		for _, x := range []io.Closer{a, pa, b, pb, c, pc, d, pd} {
			x.Close()
		}
	}
}

// TestAdv29Echo runs the echo server's CopyContext(ctx, c, c): source
// and destination one socket. It echoes a whole stream; against a peer
// that sends and never reads, a cancel ends it with the echoed bytes
// counted, in order, and the connection usable.
func TestAdv29Echo(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, kind := range []string{"tcp", "unix"} {
			for _, stall := range []bool{false, true} {
				name := ec.name + "/" + kind
				if stall {
					name += "/stalled"
				}
				t.Run(name, func(t *testing.T) {
					end, peer := relayEnds[kind](t)
					c, p := end.(net.Conn), peer
					data := relayData(3<<20+11, 7)
					if stall {
						data = relayData(24<<20, 7) // more than the socket buffers hold
					}
					wrote := make(chan error, 1)
					go func() {
						_, err := p.Write(data)
						if err == nil {
							err = p.(closeWriter).CloseWrite()
						}
						wrote <- err
					}()
					if !stall {
						got := make(chan []byte, 1)
						go func() { x, _ := io.ReadAll(p); got <- x }()
						n, err := e.CopyContext(context.Background(), c, c)
						c.(closeWriter).CloseWrite()
						if g := <-got; err != nil || n != int64(len(data)) || !bytes.Equal(g, data) {
							t.Fatalf("echo: n=%d err=%v, the peer got %d of %d bytes", n, err, len(g), len(data))
						}
						<-wrote
						return
					}
					ctx, cancel := context.WithCancel(context.Background())
					f := e.CopyAsync(ctx, c, c)
					for f.Written() == 0 {
						time.Sleep(time.Millisecond)
					}
					time.Sleep(20 * time.Millisecond)
					cancel()
					var n int64
					var err error
					adv29Within(t, "the cancelled echo", func() { n, err = f.Wait() })
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("echo: n=%d err=%v, want context.Canceled", n, err)
					}
					got := make([]byte, n)
					adv29Within(t, "reading the echo", func() { _, err = io.ReadFull(p, got) })
					if err != nil || !bytes.Equal(got, data[:n]) {
						t.Fatalf("the peer read %v; equal to what was sent: %v", err, bytes.Equal(got, data[:n]))
					}
					c.Close() // ends the peer's write
					<-wrote
				})
			}
		}
	}
}
