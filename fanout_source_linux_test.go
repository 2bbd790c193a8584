//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fanout"
	"github.com/pipes-go/pipes/internal/fdtest"
)

// A fan-out's source at its end: once no destination is left it is read
// no further, and once it has ended the caller's deadline on it is left
// as it was.

// adv13Control runs fn on f's descriptor without putting it in blocking
// mode, as f.Fd() would.
func adv13Control(t *testing.T, f *os.File, fn func(fd int) error) {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if cerr := rc.Control(func(fd uintptr) { err = fn(int(fd)) }); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// adv13FailingWriter is a destination without a descriptor whose first
// Write says it was entered, waits for fail to be closed, and fails.
type adv13FailingWriter struct {
	entered chan struct{}
	fail    chan struct{}
}

var errAdv13Gone = errors.New("destination gone")

func (w *adv13FailingWriter) Write(p []byte) (int, error) {
	close(w.entered)
	<-w.fail
	return 0, errAdv13Gone
}

// TestAdv13FanOutNoDestinationLeft: a FanOut whose last destination
// fails while the source has no input returns, and reads the source no
// further. The coordinator went back to the source after teeing (or
// queueing) the chunk the destination then failed to write, and waited
// there for input that might never come: no destination was left to
// receive it, and the FanOut returned only once the source had more
// input (which it read and dropped) or ended. The source is a pipe on
// the netpoller (spliced, where the destination has a descriptor) or in
// blocking mode (read through userspace, in poll(2) slices).
func TestAdv13FanOutNoDestinationLeft(t *testing.T) {
	fdtest.Check(t)
	cases := []struct {
		name string
		// dst returns the destination, what makes its write fail once
		// it has taken part of the chunk, and what its error wraps.
		dst func(t *testing.T) (w io.Writer, fail func(), want error)
	}{
		{"pipe", func(t *testing.T) (io.Writer, func(), error) {
			// A one-page pipe that nobody reads: the destination's
			// goroutine waits for room, then meets EPIPE.
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pr.Close(); pw.Close() })
			adv13Control(t, pw, func(fd int) error {
				_, err := unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, os.Getpagesize())
				return err
			})
			fail := func() {
				// Once the pipe is full, its reader goes.
				for {
					var n int
					adv13Control(t, pr, func(fd int) (err error) {
						n, err = unix.IoctlGetInt(fd, unix.TIOCINQ)
						return err
					})
					if n >= os.Getpagesize() {
						break
					}
					time.Sleep(time.Millisecond)
				}
				pr.Close()
			}
			return pw, fail, syscall.EPIPE
		}},
		{"writer", func(t *testing.T) (io.Writer, func(), error) {
			w := &adv13FailingWriter{entered: make(chan struct{}), fail: make(chan struct{})}
			return w, func() { <-w.entered; close(w.fail) }, errAdv13Gone
		}},
	}
	e := newTestEngine(t)
	for _, blocking := range []bool{false, true} {
		for _, c := range cases {
			name := c.name
			if blocking {
				// Read through userspace, in poll(2) slices.
				name = "blocking-source/" + name
			}
			t.Run(name, func(t *testing.T) {
				sr, sw := adv13Pipe(t, blocking)
				defer sr.Close()
				defer sw.Close()
				// One read's worth (fanout.Chunk, the userspace fan-out's
				// read): the FanOut reads it all before its destination
				// fails, and what the source holds after is what came
				// after that failure. A larger chunk would leave the
				// source holding its tail or not, as the second read
				// raced the failure.
				chunk := fdtest.Random(fanout.Chunk)
				if _, err := sw.Write(chunk); err != nil {
					t.Fatal(err)
				}
				dst, fail, want := c.dst(t)
				done := make(chan []Result, 1)
				go func() { done <- e.FanOut(context.Background(), sr, []io.Writer{dst}) }()
				fail()
				var res []Result
				select {
				case res = <-done:
				case <-time.After(10 * time.Second):
					sw.Close() // EOF: let it return
					<-done
					t.Fatal("FanOut still waiting for its source 10s after its only destination failed")
				}
				if !errors.Is(res[0].Err, want) {
					t.Errorf("destination's error = %v; want one wrapping %v", res[0].Err, want)
				}
				// Nothing more was read: what the source gets next is
				// still there for its next reader.
				next := []byte("next")
				if _, err := sw.Write(next); err != nil {
					t.Fatal(err)
				}
				sw.Close()
				rest, err := io.ReadAll(sr)
				if err != nil || !bytes.Equal(rest, next) {
					t.Errorf("the source holds %q (%v) after the FanOut; want %q", rest, err, next)
				}
			})
		}
	}
}

// adv13Pipe returns a pipe's ends, in blocking mode (os.NewFile of
// descriptors without O_NONBLOCK: the netpoller does not watch them) or
// not (os.Pipe).
func adv13Pipe(t *testing.T, blocking bool) (r, w *os.File) {
	t.Helper()
	if !blocking {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		return r, w
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(p[0]), "|0"), os.NewFile(uintptr(p[1]), "|1")
}

// TestFanOutKeepsSourceDeadline: a FanOut that ends normally (here at
// its source's limit, every destination served) leaves the caller's read
// deadline on its socket source as it was: the wake that ends a fan-out
// whose destinations all failed is not armed once the source has ended.
// The source's next Read must then fail at that deadline, not wait.
func TestFanOutKeepsSourceDeadline(t *testing.T) {
	src, feed := tcpPair(t)
	defer src.Close()
	defer feed.Close()
	if _, err := feed.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	src.SetReadDeadline(time.Now().Add(2 * time.Second))
	var a, b bytes.Buffer
	for i, r := range FanOut(context.Background(), &io.LimitedReader{R: src, N: 5}, []io.Writer{&a, drainedPipe(t), &b}) {
		if r.Err != nil || r.Written != 5 {
			t.Fatalf("destination %d: %+v", i, r)
		}
	}
	guard := time.AfterFunc(time.Minute, func() { src.Close() }) // a lost deadline fails, not waits
	defer guard.Stop()
	if _, err := src.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read after FanOut: %v, want the caller's deadline", err)
	}
}
