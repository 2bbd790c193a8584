package splice

import (
	"bytes"
	"context"
	"errors"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestDrain puts bytes into a pipe with a splice of the test's own, then
// drains them into a socket whose peer reads slowly, and checks them;
// then drains into a socket nobody reads until a woken deadline stops it.
func TestDrain(t *testing.T) {
	fdtest.Check(t)
	p, err := NewPipe(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	data := testData(p.Size())
	if n, err := syscall.Write(p.WriteFd(), data); err != nil || n != len(data) {
		t.Fatalf("filling the pipe: %d, %v", n, err)
	}
	a, b := connPair(t, "unix")
	defer a.Close()
	defer b.Close()
	got := make(chan []byte)
	go func() {
		all, _ := io.ReadAll(b)
		got <- all
	}()
	n, err := Drain(context.Background(), endOf(t, a.(syscall.Conn), false), p, len(data))
	if err != nil || n != int64(len(data)) || p.Buffered() != 0 {
		t.Fatalf("Drain = (%d, %v), %d left; want (%d, nil), 0 left", n, err, p.Buffered(), len(data))
	}
	a.Close()
	if all := <-got; !bytes.Equal(all, data) {
		t.Fatalf("peer got %d bytes, want %d", len(all), len(data))
	}

	// A full destination: the wait ends when ctx ends and Wake fires.
	c, d := connPair(t, "unix")
	defer c.Close()
	defer d.Close()
	if _, err := syscall.Write(p.WriteFd(), data); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	end := endOf(t, c.(syscall.Conn), false)
	end.Wake = func() { c.SetWriteDeadline(time.Unix(1, 0)) }
	stop := context.AfterFunc(ctx, end.Wake)
	defer stop()
	n, err = Drain(ctx, end, p, len(data))
	if !errors.Is(err, context.DeadlineExceeded) || n+int64(p.Buffered()) != int64(len(data)) {
		t.Fatalf("Drain into a full socket = (%d, %v), %d left; want DeadlineExceeded and every byte accounted for", n, err, p.Buffered())
	}
}
