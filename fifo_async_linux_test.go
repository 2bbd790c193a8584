//go:build !pipes_portable

package pipes

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
)

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
