package pipes

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func ptNewPipe(t testing.TB) (*PipeReader, *PipeWriter) {
	t.Helper()
	r, w, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

func TestNewReadWriteClose(t *testing.T) {
	r, w := ptNewPipe(t)
	go func() {
		w.Write([]byte("hello"))
		w.Close()
	}()
	b, err := io.ReadAll(r)
	if err != nil || string(b) != "hello" {
		t.Fatalf("ReadAll = %q, %v", b, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

func TestPipeDeadlines(t *testing.T) {
	r, w := ptNewPipe(t)
	r.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v", err)
	}
	r.SetDeadline(time.Time{})
	// Fill the pipe, then a write times out.
	w.SetDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 1<<20)
	var err error
	for err == nil {
		_, err = w.Write(buf)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write past the deadline: %v", err)
	}
	w.SetWriteDeadline(time.Time{})
}

// TestNilPipeEnds: every method of a nil *PipeReader or *PipeWriter
// fails with os.ErrInvalid, as a nil *os.File's does, instead of a nil
// dereference; ReadFrom fails before it reads anything of its source.
func TestNilPipeEnds(t *testing.T) {
	var r *PipeReader
	var w *PipeWriter
	src := strings.NewReader("unread")
	cases := []struct {
		name string
		call func() error
	}{
		{"PipeReader.Read", func() error { _, err := r.Read(make([]byte, 1)); return err }},
		{"PipeReader.WriteTo", func() error { _, err := r.WriteTo(io.Discard); return err }},
		{"PipeReader.Close", r.Close},
		{"PipeReader.SyscallConn", func() error { _, err := r.SyscallConn(); return err }},
		{"PipeReader.SetReadDeadline", func() error { return r.SetReadDeadline(time.Now()) }},
		{"PipeReader.SetDeadline", func() error { return r.SetDeadline(time.Now()) }},
		{"PipeWriter.Write", func() error { _, err := w.Write([]byte("x")); return err }},
		{"PipeWriter.ReadFrom", func() error { _, err := w.ReadFrom(src); return err }},
		{"PipeWriter.Close", w.Close},
		{"PipeWriter.SyscallConn", func() error { _, err := w.SyscallConn(); return err }},
		{"PipeWriter.SetWriteDeadline", func() error { return w.SetWriteDeadline(time.Now()) }},
		{"PipeWriter.SetDeadline", func() error { return w.SetDeadline(time.Now()) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("panicked: %v", p)
					}
				}()
				err = c.call()
			}()
			if !errors.Is(err, os.ErrInvalid) {
				t.Errorf("err = %v; want os.ErrInvalid", err)
			}
		})
	}
	if src.Len() != len("unread") {
		t.Errorf("ReadFrom read %d bytes of its source", len("unread")-src.Len())
	}
}
