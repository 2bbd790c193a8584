//go:build linux

package splice

import (
	"context"
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestDrainMisuse: Drain called with what it cannot use fails at once
// with an error saying so (os.ErrInvalid, os.ErrClosed), leaving the
// pipe's count alone; a pipe holding fewer bytes than n fails with
// io.ErrUnexpectedEOF once what it held has been delivered, instead of
// spinning on a destination that has room.
func TestDrainMisuse(t *testing.T) {
	fdtest.Check(t)
	const held = 5
	for _, tc := range []struct {
		name        string
		pipe        func(p *Pipe) *Pipe // the pipe Drain gets, from a pipe holding 5 bytes
		nilConn     bool
		nilEnd      bool
		n           int
		want        error
		wantWritten int64
		wantCount   int // p.Buffered() after
	}{
		{"nil pipe", func(*Pipe) *Pipe { return nil }, false, false, held, os.ErrInvalid, 0, 0},
		{"zero Pipe", func(*Pipe) *Pipe { return new(Pipe) }, false, false, held, os.ErrClosed, 0, 0},
		{"closed pipe", func(p *Pipe) *Pipe {
			q, err := NewPipe(0)
			if err != nil {
				t.Fatal(err)
			}
			q.Close()
			return q
		}, false, false, held, os.ErrClosed, 0, 0},
		{"nil Conn", func(p *Pipe) *Pipe { return p }, true, false, held, os.ErrInvalid, 0, 0},
		{"nil End", func(p *Pipe) *Pipe { return p }, false, true, held, os.ErrInvalid, 0, 0},
		{"negative n", func(p *Pipe) *Pipe { return p }, false, false, -1, os.ErrInvalid, 0, 0},
		{"n above what the pipe holds", func(p *Pipe) *Pipe { return p }, false, false, held + 10, io.ErrUnexpectedEOF, held, 10},
		{"n what the pipe holds", func(p *Pipe) *Pipe { return p }, false, false, held, nil, held, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPipe(0)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if _, err := unix.Write(p.WriteFd(), []byte("hello")); err != nil {
				t.Fatal(err)
			}
			a, _ := connPair(t, "tcp")
			dst := endOf(t, a.(syscall.Conn), false)
			if tc.nilConn {
				dst.Conn = nil
			}
			if tc.nilEnd {
				dst = nil
			}
			dp := tc.pipe(p)
			var (
				n    int64
				derr error
			)
			fdtest.Within(t, 10*time.Second, func() { n, derr = Drain(context.Background(), dst, dp, tc.n) })
			if !errors.Is(derr, tc.want) || (tc.want == nil && derr != nil) || n != tc.wantWritten {
				t.Fatalf("Drain = %d, %v; want %d, %v", n, derr, tc.wantWritten, tc.want)
			}
			if dp != nil && dp.Buffered() != tc.wantCount {
				t.Errorf("Buffered() = %d after Drain, want %d", dp.Buffered(), tc.wantCount)
			}
		})
	}
}
