//go:build !pipes_portable

package pipes

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// gatedFailWriter's Write waits until release is closed, then fails with
// errGated.
type gatedFailWriter struct{ release chan struct{} }

var errGated = errors.New("gated write failed")

func (w gatedFailWriter) Write([]byte) (int, error) {
	<-w.release
	return 0, errGated
}

// readDeadlineOnly hides a connection's descriptor (FanOut goes through
// userspace) and keeps its read deadline.
type readDeadlineOnly struct{ c *net.TCPConn }

func (r readDeadlineOnly) Read(p []byte) (int, error)        { return r.c.Read(p) }
func (r readDeadlineOnly) SetReadDeadline(t time.Time) error { return r.c.SetReadDeadline(t) }

// deadlineSource is a FanOut source whose read deadline the test sets.
type deadlineSource interface {
	io.Reader
	SetReadDeadline(time.Time) error
}

// TestFanOutLastLeavesKeepsSourceDeadline: when the last destination of
// a FanOut fails while the fan-out is not reading its source (here it
// waits for room in that destination's buffer, holding a chunk read
// past what the destination can take), FanOut returns without waking
// the source: the caller's read deadline on it is left as it was, and
// its next wait fails at that deadline. Before, the last destination to
// leave always woke the source (a deadline in the past, then cleared)
// unless the fan-out had recorded the end of its source: the caller's
// deadline was lost, and a read of the source waited forever.
func TestFanOutLastLeavesKeepsSourceDeadline(t *testing.T) {
	const buffer = 64 << 10
	tcpSource := func(t *testing.T) (io.Reader, deadlineSource, io.WriteCloser) {
		a, b := tcpPair(t)
		return a, a, b
	}
	// gated is the destination on the userspace path: it waits in its
	// first Write, and fails when released.
	gated := func(t *testing.T) (io.Writer, func()) {
		w := gatedFailWriter{release: make(chan struct{})}
		return w, func() { close(w.release) }
	}
	// stalledPipe is the destination on the kernel path: a pipe nobody
	// reads, which fails (EPIPE) once its read end is closed.
	stalledPipe := func(t *testing.T) (io.Writer, func()) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, r, w)
		return w, func() { r.Close() }
	}
	kernelWaits := [][2]string{
		{"select", "internal/fanout.(*Kernel).distribute"},
		{"IO wait", "internal/fanout.(*Kernel).spliceOut"},
	}
	for _, c := range []struct {
		name string
		// src returns the source, the value whose deadline is set and
		// read after, and a writer feeding it.
		src func(t *testing.T) (src io.Reader, conn deadlineSource, feed io.WriteCloser)
		dst func(t *testing.T) (w io.Writer, release func())
		// waits is where the fan-out's coordinator waits for room in
		// the destination's buffer, and where the destination waits.
		waits [][2]string
	}{
		{"tcp/kernel", tcpSource, stalledPipe, kernelWaits},
		{"pipe/kernel", func(t *testing.T) (io.Reader, deadlineSource, io.WriteCloser) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			return r, r, w
		}, stalledPipe, kernelWaits},
		{"tcp/userspace", func(t *testing.T) (io.Reader, deadlineSource, io.WriteCloser) {
			a, b := tcpPair(t)
			return readDeadlineOnly{a}, a, b
		}, gated, [][2]string{
			{"select", "internal/fanout.(*Userspace).distribute"},
			{"chan receive", "pipes.gatedFailWriter.Write"},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			fdtest.Check(t)
			e := newTestEngine(t)
			src, conn, feed := c.src(t)
			closeAtEnd(t, conn.(io.Closer), feed)
			go feed.Write(make([]byte, 16<<20)) // more than the fan-out reads; feed stays open
			conn.SetReadDeadline(time.Now().Add(2 * time.Second))

			dst, release := c.dst(t)
			done := make(chan []Result, 1)
			go func() {
				done <- e.FanOut(context.Background(), src, []io.Writer{dst}, FanOutBuffer(buffer))
			}()
			if !waitGoroutinesIn(done, c.waits...) {
				t.Fatal("the fan-out returned before it waited for its destination")
			}
			release()
			rs := <-done
			if rs[0].Err == nil {
				t.Fatalf("result %+v; want the destination's error", rs[0])
			}
			if us, kernel := e.Stats().Userspace, strings.Contains(c.name, "kernel"); (us == 0) != kernel {
				t.Errorf("Stats.Userspace = %d; want the fan-out on the kernel path: %v", us, kernel)
			}
			guard := time.AfterFunc(time.Minute, func() { conn.(io.Closer).Close() }) // a lost deadline fails, not waits
			defer guard.Stop()
			buf := make([]byte, 1<<20)
			for {
				if _, err := conn.Read(buf); err != nil {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						t.Fatalf("read of the source after FanOut: %v; want the caller's deadline", err)
					}
					break
				}
			}
		})
	}
}

// waitGoroutinesIn waits until, in one snapshot of the goroutines, each
// of waits (a goroutine state and a function, as stack traces give
// them) is where some goroutine waits, and reports true; or, if done is
// ready first, false.
func waitGoroutinesIn[T any](done <-chan T, waits ...[2]string) bool {
	buf := make([]byte, 4<<20)
	for {
		n := runtime.Stack(buf, true)
		gs := strings.Split(string(buf[:n]), "\n\n")
		if !slices.ContainsFunc(waits, func(w [2]string) bool {
			return !slices.ContainsFunc(gs, func(g string) bool {
				return strings.Contains(g, " ["+w[0]) && strings.Contains(g, w[1]+"(")
			})
		}) {
			return true
		}
		select {
		case <-done:
			return false
		case <-time.After(time.Millisecond):
		}
	}
}
