//go:build linux && !pipes_portable

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
				p := newFifo(t)
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

// TestAdv7CopierNoWriterSourceEnds: a Copier with no writer, none yet or
// all gone, stops when its source ends: nil once every write end is
// closed and the pipe is empty, an error matching os.ErrClosed once its
// reader is closed. Before, it waited for a writer or its context
// forever, and Wait with it. Bytes left in a pipe whose writers are gone,
// and a fifo that has had no writer yet, are not an end: the next writer
// added gets the bytes.
func TestAdv7CopierNoWriterSourceEnds(t *testing.T) {
	fdtest.Check(t)
	cases := []struct {
		name    string
		allLeft bool // a writer was there and left
		end     func(t *testing.T, src *PipeReader, in *PipeWriter)
		wantErr func(error) bool
	}{
		{"EOF/none yet", false, func(_ *testing.T, _ *PipeReader, in *PipeWriter) { in.Close() },
			func(err error) bool { return err == nil }},
		{"EOF/all left", true, func(_ *testing.T, _ *PipeReader, in *PipeWriter) { in.Close() },
			func(err error) bool { return err == nil }},
		{"closed/none yet", false, func(_ *testing.T, src *PipeReader, _ *PipeWriter) { src.Close() },
			func(err error) bool { return errors.Is(err, os.ErrClosed) }},
		{"closed/all left", true, func(_ *testing.T, src *PipeReader, _ *PipeWriter) { src.Close() },
			func(err error) bool { return errors.Is(err, os.ErrClosed) }},
	}
	for _, fan := range copierFans {
		for _, tc := range cases {
			t.Run(fan.name+"/"+tc.name, func(t *testing.T) {
				if tc.allLeft && !fan.readsOnlyForWriters {
					t.Skip("a read(2) already waiting when the last writer leaves sees the end itself")
				}
				c, src, in := startWriterless(t, fan.start, tc.allLeft)
				tc.end(t, src, in)
				if err := adv7Wait(t, c); !tc.wantErr(err) {
					t.Errorf("Wait = %v", err)
				}
			})
		}
		t.Run(fan.name+"/bytes left", func(t *testing.T) {
			src, in := ptNewPipe(t)
			c, err := fan.start(context.Background(), src)
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, in, []byte("left"))
			in.Close()
			time.Sleep(20 * time.Millisecond) // a copier that stopped now would lose the bytes
			s := newCopierSinkT(t, -1)
			if err := c.Add(s.w); err != nil {
				t.Fatalf("Add with bytes left for it: %v", err)
			}
			if err := adv7Wait(t, c); err != nil {
				t.Errorf("Wait = %v", err)
			}
			if got := s.finish(); string(got) != "left" {
				t.Errorf("writer received %q, want %q", got, "left")
			}
		})
		t.Run(fan.name+"/fifo without a writer yet", func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "fifo")
			src, _, err := OpenFifo(p, os.O_RDONLY|os.O_CREATE, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			c, err := fan.start(context.Background(), src)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond) // a copier that stopped now would be wrong
			s := newCopierSinkT(t, -1)
			if err := c.Add(s.w); err != nil {
				t.Fatalf("Add before the fifo's first writer: %v", err)
			}
			_, in, err := OpenFifo(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, in, []byte("first"))
			in.Close()
			if err := adv7Wait(t, c); err != nil {
				t.Errorf("Wait = %v", err)
			}
			if got := s.finish(); string(got) != "first" {
				t.Errorf("writer received %q, want %q", got, "first")
			}
		})
	}
}

// adv7Wait is c.Wait, bounded only to turn a hang into a failure.
func adv7Wait(t *testing.T, c *Copier) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		t.Fatal("the copier did not stop")
		return nil
	}
}
