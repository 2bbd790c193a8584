//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

type copierSink struct {
	r   *PipeReader
	w   *PipeWriter
	buf lockedBuffer
	wg  sync.WaitGroup
}

func newCopierSink(t *testing.T) *copierSink {
	s := &copierSink{}
	s.r, s.w = ptNewPipe(t)
	s.wg.Add(1)
	go func() { defer s.wg.Done(); io.Copy(&s.buf, struct{ io.Reader }{s.r}) }()
	return s
}

func (s *copierSink) finish() string {
	s.w.Close()
	s.wg.Wait()
	return s.buf.String()
}

// TestCopierFanOutLarge: several MiB reach every writer byte for byte.
func TestCopierFanOutLarge(t *testing.T) {
	fdtest.Check(t)
	src, in := ptNewPipe(t)
	sinks := []*copierSink{newCopierSink(t), newCopierSink(t), newCopierSink(t)}
	c, err := NewCopier(context.Background(), src, sinks[0].w, sinks[1].w, sinks[2].w)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 5<<20+3)
	for i := range data {
		data[i] = byte(i * 7)
	}
	go func() { in.Write(data); in.Close() }()
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	for i, s := range sinks {
		if got := s.finish(); !bytes.Equal([]byte(got), data) {
			t.Errorf("sink %d got %d bytes, want %d", i, len(got), len(data))
		}
	}
}

// TestCopierEvicts: writers whose readers went away are evicted, including
// the last one, and the others keep receiving.
func TestCopierEvicts(t *testing.T) {
	fdtest.Check(t)
	src, in := ptNewPipe(t)
	good := newCopierSink(t)
	badFirstR, badFirst := ptNewPipe(t)
	badR, badLast := ptNewPipe(t)
	c, err := NewCopier(context.Background(), src, badFirst, good.w)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Add(badLast); err != nil {
		t.Fatal(err)
	}
	// Close the read ends of the bad writers: EPIPE.
	badFirstR.Close()
	badR.Close()
	in.Write([]byte("one"))
	seedCheckBuffer(t, &good.buf, "one")
	// Each writer fails in its own goroutine, not in the order of delivery.
	for deadline := time.Now().Add(5 * time.Second); c.Writers() != 1 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := c.Writers(); n != 1 {
		t.Errorf("writers after two failed: %d, want 1", n)
	}
	in.Write([]byte(" two"))
	seedCheckBuffer(t, &good.buf, "one two")
	in.Close()
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(good.w); !errors.Is(err, ErrCopierStopped) {
		t.Errorf("Add after EOF: %v", err)
	}
	good.finish()
}

// TestCopierCancel: cancelling the context stops a copier waiting on an
// idle source and on a full writer.
func TestCopierCancel(t *testing.T) {
	fdtest.Check(t)
	t.Run("idle source", func(t *testing.T) {
		src, _ := ptNewPipe(t)
		s := newCopierSink(t)
		ctx, cancel := context.WithCancel(context.Background())
		c, err := NewCopier(ctx, src, s.w)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		cancel()
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Wait = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("copier did not stop")
		}
		s.finish()
	})
	t.Run("full writer", func(t *testing.T) {
		src, in := ptNewPipe(t)
		_, stuck := ptNewPipe(t) // nobody reads it
		ctx, cancel := context.WithCancel(context.Background())
		c, err := NewCopier(ctx, src, stuck)
		if err != nil {
			t.Fatal(err)
		}
		go in.Write(make([]byte, 4<<20))
		time.Sleep(50 * time.Millisecond)
		cancel()
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Wait = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("copier did not stop")
		}
		in.Close()
		src.Close()
	})
}
