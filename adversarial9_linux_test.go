//go:build linux && !pipes_portable

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

// TestAdv9LimitedReaderCountsUndelivered: a copy through an
// *io.LimitedReader that fails with bytes read from a socket source and
// not delivered (the destination's peer reset while they sat in the
// intermediate pipe) must lower N by every byte it read, delivered or
// not, as io.Copy does: N left higher would let the caller's next read
// take bytes past its limit.
func TestAdv9LimitedReaderCountsUndelivered(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		t.Run(ec.name, func(t *testing.T) {
			e := newTestEngine(t, ec.opts...)
			a, b := tcpPair(t)
			c, d := tcpPair(t)
			defer func() { a.Close(); b.Close(); c.Close(); d.Close() }()
			smallBuffers(t, 16<<10, c, d)
			const sent, limit = 4 << 20, 1 << 30
			wrote := make(chan error, 1)
			go func() {
				_, err := a.Write(fdtest.Random(sent))
				a.CloseWrite()
				wrote <- err
			}()
			lr := &io.LimitedReader{R: b, N: limit}
			fut := e.CopyAsync(context.Background(), c, lr)
			for fut.Written() == 0 {
				select {
				case <-fut.Done():
					t.Fatal("the copy ended before its destination filled")
				case <-time.After(time.Millisecond):
				}
			}
			d.SetLinger(0)
			d.Close() // a reset: the bytes in the copy's pipe cannot be delivered
			var n int64
			var err error
			select {
			case <-fut.Done():
				n, err = fut.Wait()
			case <-time.After(10 * time.Second):
				t.Fatal("the copy did not end after its destination's peer reset")
			}
			lost := reportedLost(err)
			if err == nil || lost == 0 {
				t.Fatalf("Copy = (%d, %v); want an error reporting undelivered bytes", n, err)
			}
			rest, rerr := io.Copy(io.Discard, b)
			if werr := <-wrote; werr != nil || rerr != nil {
				t.Fatalf("source: write %v, read %v", werr, rerr)
			}
			consumed := sent - rest
			if n+int64(lost) != consumed || lr.N != limit-consumed {
				t.Errorf("copy read %d bytes of its source (wrote %d, %d undelivered); N = %d, want %d", consumed, n, lost, lr.N, limit-consumed)
			}
		})
	}
}
