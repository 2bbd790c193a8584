//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Ends closed or ended under a copy: PipeReader and PipeWriter, the fifo
// functions and Copier at the ends of their life, the ends of a fan-out,
// and a regular-file source behind a syscall.Conn.

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

// TestAdv10CopierClosedEnds: NewCopier and Add refuse a reader or writer
// closed already, with an error matching os.ErrClosed as the file's own
// Read or Write returns (and io.Copy), as they refuse one with no usable
// descriptor, instead of taking a writer that can receive nothing or
// failing with internal/poll's "use of closed file".
func TestAdv10CopierClosedEnds(t *testing.T) {
	fdtest.Check(t)
	cases := []struct {
		name string
		run  func(t *testing.T, start func(context.Context, *PipeReader, ...*PipeWriter) (*Copier, error)) error
	}{
		{"NewCopier/reader", func(t *testing.T, start func(context.Context, *PipeReader, ...*PipeWriter) (*Copier, error)) error {
			r, _ := ptNewPipe(t)
			w := newCopierSinkT(t, -1)
			defer w.finish()
			r.Close()
			c, err := NewCopier(context.Background(), r, w.w)
			if c != nil {
				c.Wait()
			}
			return err
		}},
		{"start/writer", func(t *testing.T, start func(context.Context, *PipeReader, ...*PipeWriter) (*Copier, error)) error {
			r, in := ptNewPipe(t)
			w := newCopierSinkT(t, -1)
			defer w.finish()
			w.w.Close()
			c, err := start(context.Background(), r, w.w)
			if c != nil {
				in.Close()
				c.Wait()
			}
			return err
		}},
		{"Add/writer", func(t *testing.T, start func(context.Context, *PipeReader, ...*PipeWriter) (*Copier, error)) error {
			r, in := ptNewPipe(t)
			c, err := start(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { in.Close(); c.Wait() }()
			w := newCopierSinkT(t, -1)
			defer w.finish()
			w.w.Close()
			err = c.Add(w.w)
			if n := c.Writers(); n != 0 {
				t.Errorf("Writers = %d after adding a closed writer", n)
			}
			return err
		}},
	}
	for _, fan := range copierFans {
		for _, tc := range cases {
			if tc.name == "NewCopier/reader" && fan.name != "NewCopier" {
				continue // runs no fan of the table's
			}
			t.Run(fan.name+"/"+tc.name, func(t *testing.T) {
				if err := tc.run(t, fan.start); !errors.Is(err, os.ErrClosed) {
					t.Errorf("err = %v; want one matching os.ErrClosed", err)
				}
			})
		}
	}
}

// TestAdv10FanOutClosedEnds: a kernel fan-out whose destination
// (*PipeWriter, *os.File pipe, TCP connection) is closed, or whose source
// (*PipeReader, *os.File pipe) is closed while it waits for input,
// reports for it an error matching os.ErrClosed (net.ErrClosed for a
// net.Conn), as io.Copy and the userspace fan-out do, not internal/poll's
// "use of closed file"; the other destinations receive every byte.
func TestAdv10FanOutClosedEnds(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	data := fdtest.Random(1<<20 + 3)
	closed := func(err error) bool { return errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) }
	t.Run("destinations", func(t *testing.T) {
		for _, sk := range adv10Sources() {
			t.Run(sk.name, func(t *testing.T) {
				src, _ := sk.make(t, data)
				_, pw := ptNewPipe(t)
				pw.Close()
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				w.Close()
				c, d := tcpPair(t)
				defer d.Close()
				c.Close()
				live, finish := captureSink(t, "pipe")
				res := e.FanOut(context.Background(), src, []io.Writer{pw, w, c, live})
				got := finish()
				for i, r := range res[:3] {
					if r.Written != 0 || !closed(r.Err) {
						t.Errorf("closed destination %d: %+v; want an error matching os.ErrClosed", i, r)
					}
				}
				if r := res[3]; r.Err != nil || !bytes.Equal(got, data) {
					t.Errorf("open destination: %+v, received %d bytes; want all %d", r, len(got), len(data))
				}
			})
		}
	})
	for _, sk := range []string{"PipeReader", "os.Pipe"} {
		t.Run("source/"+sk, func(t *testing.T) {
			var src io.ReadCloser
			if sk == "PipeReader" {
				r, _ := ptNewPipe(t)
				src = r
			} else {
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
				src = r
			}
			var ws []io.Writer
			var fins []func() []byte
			for _, k := range []string{"pipe", "tcp"} {
				w, fin := captureSink(t, k)
				ws, fins = append(ws, w), append(fins, fin)
			}
			done := make(chan []Result, 1)
			go func() { done <- e.FanOut(context.Background(), src, ws) }()
			time.Sleep(50 * time.Millisecond) // the fan-out waits for input
			src.Close()
			var res []Result
			select {
			case res = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("FanOut did not end when its source was closed")
			}
			for i, r := range res {
				fins[i]()
				if !errors.Is(r.Err, os.ErrClosed) {
					t.Errorf("destination %d: %+v; want an error matching os.ErrClosed", i, r)
				}
			}
		})
	}
}

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
