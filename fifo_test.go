//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

func fdFlags(t *testing.T, rc syscall.RawConn) int {
	t.Helper()
	var fl int
	rc.Control(func(fd uintptr) { fl, _ = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	return fl
}

// TestOpenFifoReaderWaitsForWriter: Open never blocks; the reader waits
// for its first writer instead of seeing the kernel's immediate EOF, then
// reads its bytes and EOF once it is gone.
func TestOpenFifoReaderWaitsForWriter(t *testing.T) {
	fdtest.Check(t)
	p := newFifo(t)
	r, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rc, _ := r.SyscallConn()
	if fdFlags(t, rc)&unix.O_NONBLOCK == 0 {
		t.Error("fifo reader is not O_NONBLOCK")
	}
	got := make(chan string, 1)
	go func() {
		b, err := io.ReadAll(r)
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- string(b)
	}()
	select {
	case s := <-got:
		t.Fatalf("reader returned %q before any writer", s)
	case <-time.After(50 * time.Millisecond):
	}
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("hello"))
	w.Close()
	select {
	case s := <-got:
		if s != "hello" {
			t.Fatalf("got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reader did not see the writer's bytes and EOF")
	}
}

// TestOpenFifoWriteToWaitsForWriter: WriteTo (splice) also waits for the
// first writer.
func TestOpenFifoWriteToWaitsForWriter(t *testing.T) {
	fdtest.Check(t)
	p := filepath.Join(t.TempDir(), "fifo")
	r, _, err := OpenFifo(p, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	done := make(chan error, 1)
	var n int64
	go func() {
		var err error
		n, err = r.WriteTo(f)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	_, w, err := OpenFifo(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("spliced"))
	w.Close()
	select {
	case err := <-done:
		if err != nil || n != 7 {
			t.Fatalf("WriteTo = %d, %v", n, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WriteTo did not finish")
	}
}

// TestOpenFifoWriterWithoutReader: a non-blocking write-only open succeeds
// with no reader; writes fail with EPIPE until one connects.
func TestOpenFifoWriterWithoutReader(t *testing.T) {
	fdtest.Check(t)
	p := filepath.Join(t.TempDir(), "fifo")
	_, w, err := OpenFifo(p, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("write with no reader: %v, want EPIPE", err)
	}
	r, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := w.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(r, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

// TestAsyncOpenFifoReaderWaitsForWriter: an async read-only open
// completes once a writer opens.
func TestAsyncOpenFifoReaderWaitsForWriter(t *testing.T) {
	fdtest.Check(t)
	p := filepath.Join(t.TempDir(), "fifo")
	ch, err := AsyncOpenFifo(p, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-ch:
		t.Fatalf("read-only open completed without a writer: %+v", res)
	case <-time.After(30 * time.Millisecond):
	}
	_, w, err := OpenFifo(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	select {
	case res := <-ch:
		if res.Err != nil || res.R == nil || res.W != nil {
			t.Fatalf("result %+v", res)
		}
		defer res.R.Close()
		rc, _ := res.R.SyscallConn()
		if fdFlags(t, rc)&unix.O_NONBLOCK == 0 {
			t.Error("async-opened reader is not O_NONBLOCK")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("async open did not complete")
	}
}

func TestOpenFifoErrors(t *testing.T) {
	fdtest.Check(t)
	dir := t.TempDir()
	if _, _, err := OpenFifo(filepath.Join(dir, "missing"), os.O_RDONLY, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing fifo: %v", err)
	}
	reg := filepath.Join(dir, "regular")
	os.WriteFile(reg, nil, 0o600)
	if _, _, err := OpenFifo(reg, os.O_RDWR|os.O_CREATE, 0o600); err == nil {
		t.Error("a regular file opened as a fifo")
	}
	if _, _, err := OpenFifo(reg, os.O_RDWR, 0o600); err == nil {
		t.Error("a regular file opened as a fifo")
	}
	p := filepath.Join(dir, "fifo")
	r, w, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	w.Close()
	if _, _, err := OpenFifo(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); !errors.Is(err, fs.ErrExist) {
		t.Errorf("O_EXCL on an existing fifo: %v", err)
	}
	if st, err := os.Stat(p); err != nil || st.Mode()&os.ModeNamedPipe == 0 || st.Mode().Perm()&^0o666 != 0 {
		t.Errorf("Create made %v, %v", st.Mode(), err)
	}
}

// TestCreateHalvesCloseIndependently: the RDWR reader and writer have their
// own descriptors; closing the writer does not end the reader.
func TestCreateHalvesCloseIndependently(t *testing.T) {
	fdtest.Check(t)
	r, w, err := Create(filepath.Join(t.TempDir(), "fifo"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w.Write([]byte("abc"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(r, buf); err != nil || string(buf) != "abc" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

// TestAdv10ReadFromFifoWaitsForWriter: PipeWriter.ReadFrom from a
// read-only fifo that has had no writer yet waits for one, as the
// fifo's Read and WriteTo do (and io.Copy through them), instead of
// taking the kernel's "no writer" EOF for the end: also through an
// *io.LimitedReader, which io.Copy hands to ReadFrom.
func TestAdv10ReadFromFifoWaitsForWriter(t *testing.T) {
	fdtest.Check(t)
	for _, tc := range []struct {
		name string
		copy func(w *PipeWriter, r *PipeReader) (int64, error)
	}{
		{"ReadFrom", func(w *PipeWriter, r *PipeReader) (int64, error) { return w.ReadFrom(r) }},
		{"ReadFrom(LimitedReader)", func(w *PipeWriter, r *PipeReader) (int64, error) {
			return w.ReadFrom(&io.LimitedReader{R: r, N: 1 << 20})
		}},
		{"io.Copy(LimitedReader)", func(w *PipeWriter, r *PipeReader) (int64, error) {
			return io.Copy(w, io.LimitReader(r, 1<<20))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := newFifo(t)
			fr, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer fr.Close()
			pr, pw, err := New()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			defer pw.Close()
			type res struct {
				n   int64
				err error
			}
			done := make(chan res, 1)
			go func() {
				n, err := tc.copy(pw, fr)
				done <- res{n, err}
			}()
			select {
			case r := <-done:
				t.Fatalf("copy = (%d, %v) before the fifo had a writer; want it to wait", r.n, r.err)
			case <-time.After(100 * time.Millisecond):
			}
			fw, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			hello := []byte("hello, fifo")
			if _, err := fw.Write(hello); err != nil {
				t.Fatal(err)
			}
			fw.Close()
			var r res
			select {
			case r = <-done:
			case <-time.After(10 * time.Second):
				fr.Close()
				<-done
				t.Fatal("copy did not end at the writer's EOF")
			}
			if r.err != nil || r.n != int64(len(hello)) {
				t.Fatalf("copy = (%d, %v); want (%d, nil)", r.n, r.err, len(hello))
			}
			got := make([]byte, len(hello))
			if _, err := io.ReadFull(pr, got); err != nil || !bytes.Equal(got, hello) {
				t.Fatalf("pipe holds %q, %v; want %q", got, err, hello)
			}
		})
	}
}
