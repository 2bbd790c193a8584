//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestDirtyPipeNotReused: a tcp -> tcp copy fills the intermediate
// pipe of a one-pipe pool and stalls on a destination that does not
// read; then its drain fails (the peer resets, the caller closes dst, or
// ctx ends) with bytes still in the pipe. The next copy on the engine
// must not deliver a single one of those bytes.
func TestDirtyPipeNotReused(t *testing.T) {
	fdtest.Check(t)
	hows := []struct {
		name string
		stop func(c, d *net.TCPConn, cancel context.CancelFunc)
	}{
		{"peer reset", func(c, d *net.TCPConn, _ context.CancelFunc) { d.SetLinger(0); d.Close() }},
		{"dst closed", func(c, d *net.TCPConn, _ context.CancelFunc) { c.Close() }},
		{"ctx ended", func(c, d *net.TCPConn, cancel context.CancelFunc) { cancel() }},
	}
	for _, how := range hows {
		t.Run(how.name, func(t *testing.T) {
			e := newTestEngine(t, WithMaxPipes(1))
			a, b := tcpPair(t) // source b, fed through a
			c, d := tcpPair(t) // destination c; d does not read
			defer func() { a.Close(); b.Close(); c.Close(); d.Close() }()
			smallBuffers(t, 8<<10, c, d)
			stale := bytes.Repeat([]byte{'A'}, 4<<20)
			go a.Write(stale) // ends when the sockets close
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { _, err := e.CopyContext(ctx, c, b); done <- err }()
			// Wait until the copy holds the pool's pipe, stalled.
			deadline := time.Now().Add(5 * time.Second)
			for e.Stats().Pipes < 1 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond)
			how.stop(c, d, cancel)
			select {
			case err := <-done:
				t.Logf("stalled copy: %v", err)
			case <-time.After(20 * time.Second):
				t.Fatal("the stalled copy did not end")
			}

			// A fresh copy through the same pool.
			f, g := tcpPair(t)
			h, k := tcpPair(t)
			defer func() { f.Close(); g.Close(); h.Close(); k.Close() }()
			fresh := bytes.Repeat([]byte{'B'}, 1<<20)
			go func() { f.Write(fresh); f.CloseWrite() }()
			got := make(chan []byte, 1)
			go func() { all, _ := io.ReadAll(k); got <- all }()
			n, err := e.Copy(h, g)
			h.CloseWrite()
			all := <-got
			if err != nil || n != int64(len(fresh)) {
				t.Errorf("fresh copy: %d, %v; want %d, nil", n, err, len(fresh))
			}
			if i := bytes.IndexByte(all, 'A'); i >= 0 {
				t.Fatalf("the fresh copy delivered a byte of the stalled one at %d of %d", i, len(all))
			}
			if !bytes.Equal(all, fresh) {
				t.Errorf("the fresh copy delivered %d bytes, not its %d", len(all), len(fresh))
			}
		})
	}
}
