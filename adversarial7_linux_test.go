//go:build linux

package pipes

import (
	"context"
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

// TestAdv7CopierSourceClosed: a Copier whose reader is closed while it
// waits for input stops, and Wait reports an error matching
// os.ErrClosed, as a Read of the closed reader does; its writer keeps
// what came before.
func TestAdv7CopierSourceClosed(t *testing.T) {
	fdtest.Check(t)
	for _, fan := range copierFans {
		t.Run(fan.name, func(t *testing.T) {
			src, in := ptNewPipe(t)
			s := newCopierSinkT(t, -1)
			c, err := fan.start(context.Background(), src, s.w)
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, in, []byte("before"))
			s.waitFor(t, len("before"))
			src.Close()
			if err := c.Wait(); !errors.Is(err, os.ErrClosed) {
				t.Errorf("Wait = %v, want an error matching os.ErrClosed", err)
			}
			if got := s.finish(); string(got) != "before" {
				t.Errorf("writer received %q, want %q", got, "before")
			}
		})
	}
}
