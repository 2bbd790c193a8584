//go:build !pipes_portable

package pipes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
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

// adv32FifoOpensBlocked counts the threads of this process blocked in a
// fifo's open(2), waiting for its peer (the kernel's wait_for_partner,
// as /proc's wchan names it).
func adv32FifoOpensBlocked(t *testing.T) int {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/wchan")
	if err != nil || len(tasks) == 0 {
		t.Skipf("no /proc/self/task: %v", err)
	}
	n := 0
	for _, p := range tasks {
		if b, err := os.ReadFile(p); err == nil && string(b) == "wait_for_partner" {
			n++
		}
	}
	return n
}

// TestAdv32fAsyncWriterWaitsForRealReader: OpenFifo(os.O_WRONLY) on a
// fifo with no reader is a reader itself for the length of its open,
// and that wakes a writer blocked in AsyncOpenFifo(os.O_WRONLY), whose
// open then returned a writer with no reader: its first Write failed
// with EPIPE although AsyncOpenFifo promises a reader. It must go on
// waiting, and complete once a reader really has the fifo open.
func TestAdv32fAsyncWriterWaitsForRealReader(t *testing.T) {
	fdtest.Check(t)
	path := filepath.Join(t.TempDir(), "fifo")
	base := adv32FifoOpensBlocked(t)
	ch, err := AsyncOpenFifo(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	var res OpenFifoResult
	got := false
	// blocked waits until the async open waits in open(2) again, or has
	// completed (got).
	blocked := func() {
		fdtest.Within(t, 10*time.Second, func() {
			for !got && adv32FifoOpensBlocked(t) <= base {
				select {
				case res = <-ch:
					got = true
				case <-time.After(time.Millisecond):
				}
			}
		})
	}
	blocked()
	if got {
		t.Fatalf("AsyncOpenFifo(O_WRONLY) completed with no reader: %+v", res)
	}
	_, w, err := OpenFifo(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	blocked()
	if got {
		if res.W != nil {
			_, err := res.W.Write([]byte("x"))
			res.W.Close()
			t.Fatalf("AsyncOpenFifo(O_WRONLY) completed with the reader OpenFifo(O_WRONLY) was for its open only: Write: %v (EPIPE: %v)", err, errors.Is(err, syscall.EPIPE))
		}
		t.Fatalf("AsyncOpenFifo(O_WRONLY) completed early: %+v", res)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fdtest.Within(t, 10*time.Second, func() { res = <-ch })
	if res.Err != nil || res.W == nil {
		t.Fatalf("AsyncOpenFifo: %+v", res)
	}
	defer res.W.Close()
	if n, err := res.W.Write([]byte("x")); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	b := make([]byte, 2)
	if n, err := r.Read(b); n != 1 || err != nil || b[0] != 'x' {
		t.Fatalf("Read = %d, %v (%q)", n, err, b[:n])
	}
}
