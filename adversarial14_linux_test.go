//go:build linux && !pipes_portable

package pipes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Adversarial tests, fourteenth round.

// TestAdv14WrappedSourceClosed closes, in the middle of a copy, a
// regular-file source that the copy sees behind a syscall.Conn which is
// not an *os.File (connFile): the copy must fail with an error matching
// os.ErrClosed, as io.Copy's Read of it does, on every path the engine
// takes (the splice loop, sendfile, and on io_uring the ring's reads,
// into a pipe, and the Warmer's, into a socket). The ring's reads
// returned internal/poll's bare "use of closed file", which matches
// neither os.ErrClosed nor net.ErrClosed: the root maps that error for
// an *os.File source alone.
func TestAdv14WrappedSourceClosed(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(16 << 20)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, wrapped := range []bool{false, true} {
			for _, kind := range []string{"pipe", "tcp", "unix"} {
				t.Run(fmt.Sprintf("%s/wrapped=%v/%s", ec.name, wrapped, kind), func(t *testing.T) {
					f := fdtest.TempFile(t, data)
					var src io.Reader = f
					if wrapped {
						src = connFile{f}
					}
					// The peer reads nothing until open: the copy
					// fills what the destination holds and waits.
					w, open, finish := gatedSink(t, kind, data)
					fut := e.CopyAsync(context.Background(), w, src)
					for fut.Written() == 0 && !isDone(fut) {
						time.Sleep(time.Millisecond)
					}
					time.Sleep(10 * time.Millisecond)
					f.Close()
					open()
					n, err := fut.Wait()
					got, ok := finish()
					if n == int64(len(data)) || n != got || !ok {
						t.Fatalf("copy = (%d, %v), the peer got %d bytes (the file's first: %v); want the copy cut short, every byte it counts delivered", n, err, got, ok)
					}
					if !errors.Is(err, os.ErrClosed) {
						t.Errorf("copy error %q; want it to match os.ErrClosed, as the file's own Read does", err)
					}
				})
			}
		}
	}
}
