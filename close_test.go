package pipes

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestCloseSyncCopyValues: Close ends a sync Copy waiting on values
// with deadlines and no descriptor (net.Pipe: the userspace path), with
// an error wrapping ErrClosed, and leaves no deadline on them: both read
// and write again once the copy has returned.
func TestCloseSyncCopyValues(t *testing.T) {
	for _, wait := range []string{"src idle", "dst full"} {
		t.Run(wait, func(t *testing.T) {
			e, err := NewEngine()
			if err != nil {
				t.Fatal(err)
			}
			src, feed := net.Pipe()
			dst, sink := net.Pipe()
			defer func() { src.Close(); feed.Close(); dst.Close(); sink.Close() }()
			fed := make(chan struct{})
			go func() {
				defer close(fed)
				if wait == "dst full" {
					feed.Write([]byte("stuck")) // sink does not read
				}
			}()
			done := make(chan error, 1)
			go func() { _, err := e.Copy(dst, src); done <- err }()
			time.Sleep(50 * time.Millisecond)
			if err := e.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := <-done; !errors.Is(err, ErrClosed) {
				t.Fatalf("Copy: %v, want ErrClosed", err)
			}
			<-fed
			// No deadline left: a write to dst and a read of src go on.
			go func() { feed.Write([]byte("again")) }()
			got := make([]byte, 5)
			if _, err := io.ReadFull(src, got); err != nil || !bytes.Equal(got, []byte("again")) {
				t.Errorf("reading src after Close: %q, %v", got, err)
			}
			go func() { io.ReadFull(sink, make([]byte, 5)) }()
			if _, err := dst.Write([]byte("later")); err != nil {
				t.Errorf("writing dst after Close: %v", err)
			}
		})
	}
}

// endless is a source with no descriptor that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) { return len(p), nil }

// endlessWriterTo is an endless source whose WriteTo io.Copy prefers.
type endlessWriterTo struct{ endless }

func (endlessWriterTo) WriteTo(w io.Writer) (int64, error) {
	var n int64
	buf := make([]byte, 32<<10)
	for {
		k, err := w.Write(buf)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
}

// takeAll takes every Write whole and has no ReadFrom.
type takeAll struct{}

func (takeAll) Write(p []byte) (int, error) { return len(p), nil }

// TestCloseEndsBusyUserspaceCopies: Close ends a copy between values
// that have no descriptor and never wait (nothing a deadline could end),
// whichever side io.Copy's fast path is on, for every way to start one,
// with an error wrapping ErrClosed; and Close itself returns.
func TestCloseEndsBusyUserspaceCopies(t *testing.T) {
	starts := []struct {
		name string
		run  func(e *Engine, dst io.Writer, src io.Reader) error
	}{
		{"Copy", func(e *Engine, dst io.Writer, src io.Reader) error { _, err := e.Copy(dst, src); return err }},
		{"CopyContext", func(e *Engine, dst io.Writer, src io.Reader) error {
			_, err := e.CopyContext(context.Background(), dst, src)
			return err
		}},
		{"CopyAsync", func(e *Engine, dst io.Writer, src io.Reader) error {
			_, err := e.CopyAsync(context.Background(), dst, src).Wait()
			return err
		}},
	}
	pairs := []struct {
		name string
		dst  io.Writer
		src  io.Reader
	}{
		{"buffer loop", takeAll{}, endless{}},
		{"dst ReaderFrom", io.Discard, endless{}},
		{"src WriterTo", takeAll{}, endlessWriterTo{}},
		{"limited", takeAll{}, &io.LimitedReader{R: endless{}, N: 1 << 62}},
	}
	if null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		// A destination descriptor that never waits, whose *os.File
		// ReadFrom (a buffer loop here) must not hide ctx.
		defer null.Close()
		pairs = append(pairs, struct {
			name string
			dst  io.Writer
			src  io.Reader
		}{"to null device", null, endless{}})
	}
	for _, st := range starts {
		for _, p := range pairs {
			t.Run(st.name+"/"+p.name, func(t *testing.T) {
				e, err := NewEngine()
				if err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- st.run(e, p.dst, p.src) }()
				time.Sleep(10 * time.Millisecond)
				closed := make(chan error, 1)
				go func() { closed <- e.Close() }()
				select {
				case err := <-done:
					if !errors.Is(err, ErrClosed) {
						t.Errorf("copy: %v, want ErrClosed", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("the copy still runs 10 s after Close")
				}
				if err := <-closed; err != nil {
					t.Errorf("Close: %v", err)
				}
			})
		}
	}
}
