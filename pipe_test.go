package pipes

import (
	"errors"
	"io"
	"os"
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
