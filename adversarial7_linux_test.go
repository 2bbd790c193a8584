//go:build linux

package pipes

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
	"golang.org/x/sys/unix"
)

// Adversarial tests of the API of the original library: PipeReader and
// PipeWriter, the fifo functions and Copier, at the ends of their life.

// TestAdv7FifoReaderClosed: a read-only fifo that has had no writer yet
// (Open) fails Read and WriteTo with an error matching os.ErrClosed once
// it is closed, before the call or while the call waits for the first
// writer, as (*os.File).Read and a pipe from New do.
func TestAdv7FifoReaderClosed(t *testing.T) {
	fdtest.Check(t)
	ops := []struct {
		name string
		op   func(r *PipeReader) error
	}{
		{"Read", func(r *PipeReader) error { _, err := r.Read(make([]byte, 8)); return err }},
		{"Read empty", func(r *PipeReader) error { _, err := r.Read(nil); return err }},
		{"WriteTo", func(r *PipeReader) error { _, err := r.WriteTo(io.Discard); return err }},
		{"WriteTo file", func(r *PipeReader) error {
			f, err := os.CreateTemp(t.TempDir(), "out")
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = r.WriteTo(f)
			return err
		}},
	}
	for _, op := range ops {
		for _, waiting := range []bool{false, true} {
			if waiting && op.name == "Read empty" {
				continue // an empty Read never waits
			}
			name := op.name + "/closed before"
			if waiting {
				name = op.name + "/closed while waiting"
			}
			t.Run(name, func(t *testing.T) {
				p := filepath.Join(t.TempDir(), "fifo")
				if err := unix.Mkfifo(p, 0o600); err != nil {
					t.Fatal(err)
				}
				r, err := Open(p)
				if err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				if waiting {
					go func() { done <- op.op(r) }()
					time.Sleep(20 * time.Millisecond) // let it wait; either order must pass
					r.Close()
				} else {
					r.Close()
					go func() { done <- op.op(r) }()
				}
				select {
				case err := <-done:
					if !errors.Is(err, os.ErrClosed) {
						t.Fatalf("%s of a closed fifo reader = %v, want an error matching os.ErrClosed", op.name, err)
					}
				case <-time.After(time.Minute):
					t.Fatalf("%s did not return after Close", op.name)
				}
			})
		}
	}
}
