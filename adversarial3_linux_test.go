//go:build linux

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// blockingPipe returns the two ends of a pipe in blocking mode, as
// *os.Files the netpoller does not watch (os.NewFile of descriptors
// without O_NONBLOCK), both closed when the test ends.
func blockingPipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r = os.NewFile(uintptr(p[0]), "pipe (blocking, read end)")
	w = os.NewFile(uintptr(p[1]), "pipe (blocking, write end)")
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// quietBlockingSource returns a source in blocking mode of kind "pty" (a
// pty master), "pipe", "unix" or "tcp" that yields hello and then
// nothing, and end, which makes it end (EOF, or EIO for the pty).
func quietBlockingSource(t *testing.T, kind string, hello []byte) (src io.Reader, end func()) {
	t.Helper()
	var w io.WriteCloser
	switch kind {
	case "pty":
		src, w = blockingPty(t)
	case "pipe":
		src, w = blockingPipe(t)
	case "unix", "tcp":
		src, w = blockingSocket(t, kind, 0)
	default:
		t.Fatalf("unknown source kind %q", kind)
	}
	if _, err := w.Write(hello); err != nil {
		t.Fatal(err)
	}
	return src, func() { w.Close() }
}

// TestAdv3FanOutBlockingSource: FanOut reads a source in blocking mode
// (a pty master as f.Fd() or term.MakeRaw leaves it, an os.NewFile of a
// blocking pipe or socket) through userspace, and such a Read waits in
// the kernel, where no deadline reaches it. A fan-out from one that has
// gone quiet must end once cancelled or its engine closed (Close must
// return), every destination with an error wrapping context.Canceled or
// ErrClosed and the bytes it received, as a Copy from the same source
// ends.
func TestAdv3FanOutBlockingSource(t *testing.T) {
	fdtest.Check(t)
	hello := []byte("hello, quiet source")
	for _, ec := range engineCases(t) {
		for _, kind := range []string{"pty", "pipe", "unix", "tcp", "limited-pty"} {
			for _, how := range []string{"cancel", "Close"} {
				t.Run(fmt.Sprintf("%s/%s/%s", ec.name, kind, how), func(t *testing.T) {
					e, err := NewEngine(ec.opts...)
					if err != nil {
						t.Fatal(err)
					}
					defer e.Close()
					const limit = 1000
					src, end := quietBlockingSource(t, strings.TrimPrefix(kind, "limited-"), hello)
					lr := &io.LimitedReader{R: src, N: limit}
					if kind != strings.TrimPrefix(kind, "limited-") {
						src = lr
					}
					r, w := advConn(t, "pipe")
					defer r.Close()
					defer w.Close()
					var buf bytes.Buffer
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					res := make(chan []Result, 1)
					go func() { res <- e.FanOut(ctx, src, []io.Writer{w, &buf}) }()
					got := make([]byte, len(hello))
					if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, hello) {
						t.Fatalf("the destination's peer read %q, %v; want %q", got, err, hello)
					}
					closed, want := stopCopy(e, how, cancel)
					rs, ok := recvBy(res, time.Now().Add(20*time.Second))
					if !ok {
						end()
						rs = <-res
						t.Fatalf("FanOut still ran 20s after the %s; once the source ended: %+v", how, rs)
					}
					if closed != nil {
						if c := <-closed; c.err != nil {
							t.Errorf("Close: %v", c.err)
						}
					}
					for i, res := range rs {
						if !errors.Is(res.Err, want) || res.Written != int64(len(hello)) {
							t.Errorf("destination %d: %+v, want (%d, an error wrapping %v)", i, res, len(hello), want)
						}
					}
					if !bytes.Equal(buf.Bytes(), hello) {
						t.Errorf("the buffer destination got %q, want %q", buf.Bytes(), hello)
					}
					if src == lr && lr.N != limit-int64(len(hello)) {
						t.Errorf("LimitedReader.N = %d after the fan-out, want %d", lr.N, limit-len(hello))
					}
				})
			}
		}
	}
}
