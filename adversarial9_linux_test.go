//go:build linux

package pipes

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestAdv9UrgentIntoStalledPipeClose is TestFaultUrgentIntoStalledBlockingPipe
// ended by a Close of the destination instead of the context: the round
// through the userspace buffer that crosses the urgent mark waited for
// room in the blocking pipe in poll(2) slices without leaving the
// destination's RawConn callback, where a Close is never seen, so the
// copy ran on until the pipe's reader read. It must end with an error
// matching os.ErrClosed, having reported the bytes the pipe took.
func TestAdv9UrgentIntoStalledPipeClose(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		t.Run(ec.name, func(t *testing.T) {
			e := newTestEngine(t, ec.opts...)
			fut, r, w := urgentIntoStalledPipe(t, e, context.Background())
			w.Close()
			select {
			case <-fut.Done():
			case <-time.After(10 * time.Second):
				r.Close() // the copy's write fails (EPIPE): it returns
				<-fut.Done()
				t.Fatal("the copy did not end with a Close of its destination")
			}
			n, err := fut.Wait()
			if !errors.Is(err, os.ErrClosed) {
				t.Errorf("Wait = (%d, %v), want an error matching os.ErrClosed", n, err)
			}
			got, rerr := io.ReadAll(r) // EOF: the copy holds w no more
			if rerr != nil || int64(len(got)) != n {
				t.Errorf("the pipe holds %d bytes (%v), the copy reports %d", len(got), rerr, n)
			}
		})
	}
}
