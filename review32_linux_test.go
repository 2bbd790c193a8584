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
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestReview32LimitedLimitedPacedCancel: a Limiter inside two
// *io.LimitedReaders, with no Limiter around them, is read by the copy
// through the inner LimitedReader's Read: the RateLimitedReader's wait
// has no context, and a cancelled copy waits on for its grant.
func TestReview32LimitedLimitedPacedCancel(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		t.Run(ec.name, func(t *testing.T) {
			e, err := NewEngine(ec.opts...)
			if err != nil {
				t.Fatal(err)
			}
			shared := NewLimiter(1, 64<<10)
			if _, err := shared.Take(context.Background(), 64<<10); err != nil {
				t.Fatal(err)
			}
			src := io.LimitReader(io.LimitReader(RateLimit(bytes.NewReader(make([]byte, 100<<10)), shared), 80<<10), 50<<10)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := e.CopyContext(ctx, io.Discard, src)
				done <- err
			}()
			fdtest.Within(t, 10*time.Second, func() {
				for len(shared.turn) == 0 {
					time.Sleep(time.Millisecond)
				}
			})
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("err = %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("copy still waiting for the Limiter 10s after the cancel")
			}
			closeWithin(t, e, 10*time.Second)
		})
	}
}

// TestReview32AsyncWriterOfReaderlessPipe: AsyncOpenFifo(O_WRONLY) of an
// anonymous pipe by its /proc path (/dev/stdout of a command piped to one
// that exited, say): open(2) of a pipe never waits, so the loop that
// waits past a passing reader re-opens it without end.
func TestReview32AsyncWriterOfReaderlessPipe(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	pr.Close()
	ch, err := AsyncOpenFifo(fmt.Sprintf("/proc/self/fd/%d", pw.Fd()), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-ch:
		if res.Err != nil || res.W == nil {
			t.Fatalf("AsyncOpenFifo = %+v, want a writer", res)
		}
		defer res.W.Close()
		// As OpenFifo's writer without a reader: its writes fail.
		if _, err := res.W.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
			t.Errorf("Write with no reader: %v, want EPIPE", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("AsyncOpenFifo of a pipe with no reader: no result after 10s")
	}
}
