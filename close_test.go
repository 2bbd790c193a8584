package pipes

import (
	"bytes"
	"errors"
	"io"
	"net"
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
