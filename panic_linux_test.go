//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fanout"
	"github.com/pipes-go/pipes/internal/fdtest"
)

// panicEnd is a Reader and Writer without a descriptor that panics with
// val: Read after yielding readOK bytes (readOK < 0: Read returns EOF at
// once), Write once writeOK bytes were accepted (writeOK < 0: never).
type panicEnd struct {
	val             any
	readOK, writeOK int
	read, written   int
}

func (p *panicEnd) Read(b []byte) (int, error) {
	if p.readOK < 0 {
		return 0, io.EOF
	}
	if p.read >= p.readOK {
		panic(p.val)
	}
	n := min(len(b), p.readOK-p.read)
	p.read += n
	return n, nil
}

func (p *panicEnd) Write(b []byte) (int, error) {
	if p.writeOK >= 0 && p.written+len(b) > p.writeOK {
		panic(p.val)
	}
	p.written += len(b)
	return len(b), nil
}

// drainedPipe returns the write end of a pipe whose read end is drained
// until the test ends.
func drainedPipe(t *testing.T) io.Writer {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, r)
	t.Cleanup(func() { w.Close(); r.Close() })
	return w
}

// TestPanicsReachTheCaller: a panic of a Read or Write that FanOut,
// CopyBatch or RelayWith runs, in the caller's goroutine or in one of their own,
// reaches the caller with its value, as io.Copy's would, and leaves the
// engine as if the call had returned: Close returns, no goroutine or
// descriptor is left. Before, a panic of a FanOut source's Read left the
// fan-out counted in flight, its destinations' goroutines waiting, and
// Close hanging; a destination's Write, a batch's copy, or a relay's
// a -> b direction panicked in a goroutine of the package's and took the
// process down.
func TestPanicsReachTheCaller(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(4<<20 + 5)
	type sentinel struct{ name string }
	pipeSink := drainedPipe
	// tcpEnd returns one end of a TCP connection; the other end is fed
	// data and drained until the test ends.
	tcpEnd := func(t *testing.T) net.Conn {
		a, b := tcpPair(t)
		go func() { b.Write(data) }()
		go io.Copy(io.Discard, b)
		t.Cleanup(func() { a.Close(); b.Close() })
		return a
	}
	cases := []struct {
		name string
		run  func(t *testing.T, e *Engine, val any)
	}{
		{"fanout/userspace/source Read", func(t *testing.T, e *Engine, val any) {
			src := &panicEnd{val: val, readOK: 300 << 10, writeOK: -1}
			e.FanOut(context.Background(), src, []io.Writer{pipeSink(t), io.Discard})
		}},
		{"fanout/userspace/destination Write", func(t *testing.T, e *Engine, val any) {
			w := &panicEnd{val: val, readOK: -1, writeOK: 200 << 10}
			e.FanOut(context.Background(), bytes.NewReader(data), []io.Writer{pipeSink(t), w})
		}},
		{"fanout/kernel/destination Write", func(t *testing.T, e *Engine, val any) {
			w := &panicEnd{val: val, readOK: -1, writeOK: 200 << 10}
			e.FanOut(context.Background(), fdtest.TempFile(t, data), []io.Writer{w, pipeSink(t)})
		}},
		{"batch/Read, beside a copy that waits", func(t *testing.T, e *Engine, val any) {
			// The second pair's source never ends: the panic must end
			// its copy, not wait for it.
			idle, peer := tcpPair(t)
			closeAtEnd(t, idle, peer)
			e.CopyBatch(context.Background(), []Pair{
				{Dst: pipeSink(t), Src: &panicEnd{val: val, readOK: 300 << 10, writeOK: -1}},
				{Dst: pipeSink(t), Src: idle},
			})
		}},
		{"batch/Write", func(t *testing.T, e *Engine, val any) {
			e.CopyBatch(context.Background(), []Pair{
				{Dst: io.Discard, Src: bytes.NewReader(data)},
				{Dst: &panicEnd{val: val, readOK: -1, writeOK: 200 << 10}, Src: bytes.NewReader(data)},
			})
		}},
		{"relay/a Read (own goroutine)", func(t *testing.T, e *Engine, val any) {
			e.Relay(context.Background(), &panicEnd{val: val, readOK: 100 << 10, writeOK: -1}, tcpEnd(t))
		}},
		{"relay/b Read (caller's goroutine)", func(t *testing.T, e *Engine, val any) {
			e.Relay(context.Background(), tcpEnd(t), &panicEnd{val: val, readOK: 100 << 10, writeOK: -1})
		}},
		{"relay/a Write", func(t *testing.T, e *Engine, val any) {
			e.Relay(context.Background(), &panicEnd{val: val, readOK: -1, writeOK: 100 << 10}, tcpEnd(t))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := NewEngine()
			if err != nil {
				t.Fatal(err)
			}
			val := &sentinel{c.name}
			got := func() (p any) {
				defer func() { p = recover() }()
				c.run(t, e, val)
				return nil
			}()
			if got != val {
				t.Errorf("recovered %v; want the value the Read or Write panicked with", got)
			}
			closeWithin(t, e, 10*time.Second)
		})
	}
}

// panicCloseWrite is a TCP connection whose CloseWrite panics.
type panicCloseWrite struct{ *net.TCPConn }

func (panicCloseWrite) CloseWrite() error { panic("CloseWrite") }

// TestRelayCloseWritePanicClearsDeadline: a CloseWrite that panics
// reaches the caller, and leaves no deadline behind on its end: the
// wake armed around the call is disarmed on the way out, so that the
// relay's end does not set a write deadline in the past on a connection
// the caller goes on using.
func TestRelayCloseWritePanicClearsDeadline(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	a, pa := tcpPair(t)
	bc, pb := tcpPair(t)
	closeAtEnd(t, a, pa, bc, pb)
	pa.CloseWrite() // a -> b reaches EOF at once, and calls b's CloseWrite
	got := func() (p any) {
		defer func() { p = recover() }()
		e.Relay(context.Background(), a, panicCloseWrite{bc})
		return nil
	}()
	if got != "CloseWrite" {
		t.Fatalf("recovered %v; want CloseWrite's panic", got)
	}
	go io.Copy(io.Discard, pb)
	if _, err := bc.Write([]byte("after")); err != nil {
		t.Errorf("write after the relay: %v; want no deadline left", err)
	}
}

// TestFanOutWritePanicWhileSourceWaits: a destination's Write that
// panics while the fan-out's source has no input reaches the caller
// then, on both fan-out paths: the source's read, which is waiting, is
// interrupted as a cancel interrupts it. Before, the coordinator went on
// waiting for the source, and the panic reached the caller only once
// the source had more input or ended: with a source that stays open and
// idle, never.
func TestFanOutWritePanicWhileSourceWaits(t *testing.T) {
	fdtest.Check(t)
	for _, c := range []struct {
		name  string
		other func(t *testing.T) io.Writer
	}{
		{"userspace", func(*testing.T) io.Writer { return io.Discard }},
		{"kernel", drainedPipe},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newTestEngine(t)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()
			if _, err := w.Write(make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
			// w stays open and writes nothing more: the source waits.
			// Should the fan-out wait for it, ending the source lets it
			// return, and the test fail, rather than hang.
			const patience = 20 * time.Second
			waited := time.AfterFunc(patience, func() { w.Close() })
			defer waited.Stop()
			val := "Write"
			got := func() (p any) {
				defer func() { p = recover() }()
				e.FanOut(context.Background(), r, []io.Writer{&panicEnd{val: val, readOK: -1, writeOK: 0}, c.other(t)})
				return nil
			}()
			if got != val {
				t.Fatalf("recovered %v; want the Write's panic", got)
			}
			if !waited.Stop() {
				t.Fatalf("the panic reached the caller only when the source ended, %v later", patience)
			}
			if us, want := e.Stats().Userspace, c.name == "userspace"; (us > 0) != want {
				t.Errorf("Stats.Userspace = %d; the fan-out was not on the %s path", us, c.name)
			}
			// The interruption of the source is undone: no deadline left.
			if _, err := w.Write([]byte("after")); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Read(make([]byte, 2000)); err != nil {
				t.Errorf("read of the source after the fan-out: %v; want no deadline left", err)
			}
		})
	}
}

// countingWriter counts the bytes written to it.
type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// TestFanOutPanicCountsBytes: the bytes a fan-out delivered before a
// destination's Write panicked are in Stats.Bytes, as those of a
// fan-out that returned are: they moved. Before, FanOut added its
// destinations' counts only on return, and a panic skipped it.
func TestFanOutPanicCountsBytes(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	data := fdtest.Random(1 << 20)
	var other countingWriter
	w := &panicEnd{val: "Write", readOK: -1, writeOK: 200 << 10}
	got := func() (p any) {
		defer func() { p = recover() }()
		e.FanOut(context.Background(), bytes.NewReader(data), []io.Writer{&other, w})
		return nil
	}()
	if got != "Write" {
		t.Fatalf("recovered %v; want the Write's panic", got)
	}
	moved := uint64(other.n.Load()) + uint64(w.written)
	if w.written == 0 || e.Stats().Bytes != moved {
		t.Errorf("Stats.Bytes = %d; the destinations received %d (%d + %d)", e.Stats().Bytes, moved, other.n.Load(), w.written)
	}
}

// waitedPanic is a panic value whose Error, which the runtime calls to
// print it before the process ends, waits until resolved is closed or a
// second has passed: time for a goroutine waiting on the Future to see
// a resolution that should not happen.
type waitedPanic struct{ resolved chan struct{} }

func (p waitedPanic) Error() string {
	select {
	case <-p.resolved:
	case <-time.After(time.Second):
	}
	return "waited panic"
}

// TestCopyAsyncPanicLeavesFutureUnresolved: a panic in a CopyAsync
// copy ends the process, as `go io.Copy(...)` does, without resolving
// the Future first. Before, the Future was resolved with (0, nil) as the
// panic went by, and a waiter could act on a copy that looked complete.
// The panic runs in a child copy of this test binary.
func TestCopyAsyncPanicLeavesFutureUnresolved(t *testing.T) {
	if os.Getenv("PIPES_TEST_ASYNC_PANIC") != "" {
		p := waitedPanic{resolved: make(chan struct{})}
		f := CopyAsync(context.Background(), &panicEnd{val: p, writeOK: 0}, bytes.NewReader([]byte("x")))
		n, err := f.Wait()
		fmt.Printf("RESOLVED (%d, %v)\n", n, err)
		close(p.resolved)
		time.Sleep(time.Second)
		os.Exit(3)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^TestCopyAsyncPanicLeavesFutureUnresolved$")
	cmd.Env = append(os.Environ(), "PIPES_TEST_ASYNC_PANIC=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("child: %v, want a panic's exit status 2\n%s", err, tail(out, 2000))
	}
	if bytes.Contains(out, []byte("RESOLVED")) || !bytes.Contains(out, []byte("waited panic")) {
		t.Fatalf("child output:\n%s", tail(out, 2000))
	}
	if !bytes.Contains(out, []byte("panicEnd).Write")) {
		t.Errorf("the trace does not show the panicking Write:\n%s", tail(out, 2000))
	}
}

// goexitEnd's Write calls runtime.Goexit, as t.FailNow would in a test's.
type goexitEnd struct{}

func (goexitEnd) Write([]byte) (int, error) { runtime.Goexit(); return 0, nil }

// goexitReader's Read calls runtime.Goexit.
type goexitReader struct{}

func (goexitReader) Read([]byte) (int, error) { runtime.Goexit(); return 0, nil }

// goexitConn is a connection whose Write calls runtime.Goexit.
type goexitConn struct{ net.Conn }

// goexitEOF reads as empty and calls runtime.Goexit in Write. It has no
// deadlines for a relay to set.
type goexitEOF struct{ goexitEnd }

func (goexitEOF) Read([]byte) (int, error) { return 0, io.EOF }

func (goexitConn) Write([]byte) (int, error) { runtime.Goexit(); return 0, nil }

// readWriter reads r and discards what it is given.
type readWriter struct{ r io.Reader }

func (w readWriter) Read(b []byte) (int, error)  { return w.r.Read(b) }
func (w readWriter) Write(b []byte) (int, error) { return len(b), nil }

// TestGoexitInReadOrWrite: a Read or Write that calls runtime.Goexit
// (t.FailNow in a test's fake end) fails its copy with an error matching
// fanout.ErrGoexit where the copy runs in a goroutine of the package,
// and, where it runs in the caller's, ends that goroutine as it would
// under io.Copy and leaves nothing running (Close returns). Before, a
// CopyAsync, CopyBatch copy, FanOut destination or relay direction that
// did this reported success with the bytes undelivered, and a FanOut
// source's or relay caller's left the other goroutines running.
func TestGoexitInReadOrWrite(t *testing.T) {
	src := func() io.Reader { return bytes.NewReader(make([]byte, 1<<20)) }
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, e *Engine) error // in a goroutine of its own
	}{
		{"CopyAsync", func(t *testing.T, e *Engine) error {
			_, err := e.CopyAsync(context.Background(), goexitEnd{}, src()).Wait()
			return err
		}},
		{"CopyBatch", func(t *testing.T, e *Engine) error {
			return e.CopyBatch(context.Background(), []Pair{{goexitEnd{}, src()}})[0].Err
		}},
		{"FanOut/destination", func(t *testing.T, e *Engine) error {
			rs := e.FanOut(context.Background(), src(), []io.Writer{io.Discard, goexitEnd{}})
			if rs[0].Err != nil || rs[0].Written != 1<<20 {
				t.Errorf("the other destination: %+v", rs[0])
			}
			return rs[1].Err
		}},
		{"FanOut/destination/kernel", func(t *testing.T, e *Engine) error {
			f := fdtest.TempFile(t, make([]byte, 1<<20))
			rs := e.FanOut(context.Background(), f, []io.Writer{drainedPipe(t), goexitEnd{}})
			if rs[0].Err != nil || rs[0].Written != 1<<20 {
				t.Errorf("the other destination: %+v", rs[0])
			}
			return rs[1].Err
		}},
		{"FanOut/source", func(t *testing.T, e *Engine) error {
			e.FanOut(context.Background(), goexitReader{}, []io.Writer{drainedPipe(t), io.Discard})
			return nil
		}},
		{"Relay/other direction", func(t *testing.T, e *Engine) error {
			_, _, err := e.Relay(context.Background(), readWriter{src()}, goexitEOF{})
			return err
		}},
		{"Relay/caller's direction", func(t *testing.T, e *Engine) error {
			c, peer := tcpPair(t)
			defer c.Close()
			defer peer.Close()
			e.Relay(context.Background(), goexitConn{c}, readWriter{src()}) // c idle: only the Goexit ends the relay
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := NewEngine()
			if err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			var err2 error
			returned := false
			go func() {
				defer close(exited)
				err2 = tc.run(t, e)
				returned = true
			}()
			<-exited
			closeWithin(t, e, 10*time.Second)
			if !returned {
				return // the caller's goroutine ended, and nothing is left running
			}
			if !errors.Is(err2, fanout.ErrGoexit) {
				t.Fatalf("err = %v, want fanout.ErrGoexit", err2)
			}
		})
	}
}
