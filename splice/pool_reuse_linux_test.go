//go:build linux

package splice

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestFailedDrainPipe: a file -> tcp copy through a one-pipe pool
// fails mid-drain (the peer stops reading, then resets) with bytes in the
// pipe. The file's offset is left just after the bytes that reached dst
// (those in the pipe are seeked back over), the pipe is not pooled with
// them, and the next copy through the pool delivers its own bytes only.
func TestFailedDrainPipe(t *testing.T) {
	fdtest.Check(t)
	pool := NewPool(64<<10, 1)
	defer pool.Close()
	stale := bytes.Repeat([]byte{'A'}, 8<<20)
	f := tempFile(t, stale)
	a, b := connPair(t, "tcp")
	a.(*net.TCPConn).SetWriteBuffer(8 << 10)
	b.(*net.TCPConn).SetReadBuffer(8 << 10)
	b.(*net.TCPConn).SetLinger(0)
	var (
		n   int64
		err error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, _, err = Copy(context.Background(), endOf(t, a.(syscall.Conn), false), endOf(t, f, true), -1, pool)
	}()
	// Let the copy fill its pipe and stall on the unread socket.
	fdtest.Within(t, 10*time.Second, func() {
		for pool.Stats().InUse == 0 {
			time.Sleep(time.Millisecond)
		}
	})
	time.Sleep(50 * time.Millisecond)
	got, _ := io.ReadAll(io.LimitReader(b, 1)) // at least a byte arrived
	b.Close()                                  // reset: the drain fails
	fdtest.Within(t, 10*time.Second, func() { <-done })
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("Copy = %d, %v; want ECONNRESET or EPIPE", n, err)
	}
	if len(got) != 1 {
		t.Fatalf("the peer read %d bytes before the reset", len(got))
	}
	if off := offset(t, f); off != n {
		t.Errorf("file offset %d after a copy that delivered %d bytes", off, n)
	}
	if st := pool.Stats(); st.InUse != 0 || st.Discarded == 0 && st.Idle != 0 {
		t.Errorf("pool after the failed copy: %+v", st)
	}

	// The next copy through the pool.
	c, d := connPair(t, "tcp")
	g, h := connPair(t, "tcp")
	fresh := bytes.Repeat([]byte{'B'}, 1<<20)
	go func() { d.Write(fresh); d.(*net.TCPConn).CloseWrite() }()
	all := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(h); all <- b }()
	var m int64
	fdtest.Within(t, 20*time.Second, func() {
		m, _, err = Copy(context.Background(), endOf(t, g.(syscall.Conn), false), endOf(t, c.(syscall.Conn), true), -1, pool)
	})
	g.(*net.TCPConn).CloseWrite()
	recv := <-all
	if err != nil || m != int64(len(fresh)) || !bytes.Equal(recv, fresh) {
		t.Errorf("next copy = %d, %v; received %d bytes (%d of them stale)", m, err, len(recv), bytes.Count(recv, []byte{'A'}))
	}
}
