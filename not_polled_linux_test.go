//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Copies from and into descriptors in non-blocking mode that Go's
// netpoller does not watch.

// adv19NotPolled returns an end of a new unix stream socketpair or pipe
// (its read end for a source, its write end for a destination) as an
// *os.File that Go does not watch on its netpoller but that is in
// non-blocking mode: os.NewFile of a blocking descriptor whose file
// description was put in non-blocking mode afterwards (as net.FileConn
// of a duplicate does, or another process sharing it). The other end,
// a descriptor, is returned too; both are closed when the test ends.
func adv19NotPolled(t *testing.T, pipe, write bool) (f *os.File, other int) {
	t.Helper()
	var fds [2]int
	if pipe {
		if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		if write {
			fds[0], fds[1] = fds[1], fds[0]
		}
	} else {
		sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds = [2]int{sp[0], sp[1]}
	}
	f = os.NewFile(uintptr(fds[0]), "not-polled")
	if err := unix.SetNonblock(fds[0], true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(); unix.Close(fds[1]) })
	return f, fds[1]
}

// TestAdv19NonblockingNotPolled copies from such a file with no input
// (its peer open and silent) and into such a file with no room (its
// peer reading nothing). Its own Read or Write fails with EAGAIN, and so
// does io.Copy; every API must fail so too (errors.Is(err,
// syscall.EAGAIN)), having counted exactly the bytes the destination's
// peer can read. A RawConn's wait on a descriptor off the netpoller
// fails with internal/poll's bare "waiting for unsupported file type",
// which matched no errno, and the copies returned it.
func TestAdv19NonblockingNotPolled(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(4 << 20)
	apis := []struct {
		name string
		run  func(e *Engine, dst io.Writer, src io.Reader) (int64, error)
	}{
		{"Copy", func(e *Engine, dst io.Writer, src io.Reader) (int64, error) { return e.Copy(dst, src) }},
		{"CopyContext", func(e *Engine, dst io.Writer, src io.Reader) (int64, error) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			return e.CopyContext(ctx, dst, src)
		}},
		{"CopyAsync", func(e *Engine, dst io.Writer, src io.Reader) (int64, error) {
			return e.CopyAsync(context.Background(), dst, src).Wait()
		}},
		{"FanOut", func(e *Engine, dst io.Writer, src io.Reader) (int64, error) {
			r := e.FanOut(context.Background(), src, []io.Writer{dst})[0]
			return r.Written, r.Err
		}},
	}
	ends := []struct {
		name  string
		pipe  bool
		write bool // the not-polled file is the destination
	}{
		{"socket-source", false, false},
		{"pipe-source", true, false},
		{"socket-destination", false, true},
		{"pipe-destination", true, true},
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, end := range ends {
			for _, api := range apis {
				t.Run(fmt.Sprintf("%s/%s/%s", ec.name, end.name, api.name), func(t *testing.T) {
					f, other := adv19NotPolled(t, end.pipe, end.write)
					if !end.write {
						a, b := unixPair(t)
						closeAtEnd(t, a, b)
						n, err := api.run(e, a, f)
						a.Close()
						got, _ := io.ReadAll(b)
						if n != 0 || len(got) != 0 || !errors.Is(err, syscall.EAGAIN) {
							t.Errorf("copy = (%d, %v), %d bytes delivered; want (0, EAGAIN) as io.Copy", n, err, len(got))
						}
						return
					}
					src := fdtest.TempFile(t, data)
					n, err := api.run(e, f, src)
					if !errors.Is(err, syscall.EAGAIN) {
						t.Errorf("copy = (%d, %v); want an error matching EAGAIN as io.Copy", n, err)
					}
					if err := unix.SetNonblock(other, true); err != nil {
						t.Fatal(err)
					}
					var got []byte
					buf := make([]byte, 64<<10)
					for {
						m, rerr := unix.Read(other, buf)
						if m <= 0 || rerr != nil {
							break
						}
						got = append(got, buf[:m]...)
					}
					if n != int64(len(got)) || !bytes.Equal(got, data[:len(got)]) {
						t.Errorf("copy = (%d, %v); the peer can read %d bytes (the file's first: %v)",
							n, err, len(got), bytes.Equal(got, data[:min(len(got), len(data))]))
					}
				})
			}
		}
	}
}
