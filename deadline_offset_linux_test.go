//go:build !pipes_portable

package pipes

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// writeDeadliner is a destination whose write deadline a test sets.
type writeDeadliner interface {
	io.Writer
	SetWriteDeadline(time.Time) error
}

// TestDeadlineBeforeCopyKeepsFileOffset: a copy from a regular file into
// a destination whose write deadline has passed fails with the deadline
// and delivers nothing; the file's offset stays where it was, as the
// kernel paths (and io.Copy's sendfile) leave it: no byte read from the
// file is lost.
func TestDeadlineBeforeCopyKeepsFileOffset(t *testing.T) {
	fdtest.Check(t)
	sinks := []struct {
		name string
		make func(t *testing.T) writeDeadliner
	}{
		{"tcp", func(t *testing.T) writeDeadliner {
			a, b := tcpPair(t)
			t.Cleanup(func() { a.Close(); b.Close() })
			return a
		}},
		{"unix", func(t *testing.T) writeDeadliner {
			a, b := unixPair(t)
			t.Cleanup(func() { a.Close(); b.Close() })
			return a
		}},
		{"pipe", func(t *testing.T) writeDeadliner {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close(); w.Close() })
			return w
		}},
	}
	for _, ec := range []engineCase{{"default", nil}, {"splice", []Option{WithBackend(BackendSplice)}}} {
		e := newTestEngine(t, ec.opts...)
		for _, sc := range sinks {
			t.Run(ec.name+"/"+sc.name, func(t *testing.T) {
				f := fdtest.TempFile(t, bytes.Repeat([]byte{'x'}, 100<<10))
				w := sc.make(t)
				w.SetWriteDeadline(time.Now().Add(-time.Second))
				n, err := e.Copy(w, f)
				if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("Copy = %d, %v; want 0 and the deadline", n, err)
				}
				off, err := f.Seek(0, io.SeekCurrent)
				if err != nil {
					t.Fatal(err)
				}
				if off != 0 {
					t.Errorf("the file's offset is %d after a copy that delivered nothing and reported no undelivered bytes", off)
				}
			})
		}
	}
}
