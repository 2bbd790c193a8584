package splice

import (
	"context"
	"io"
	"os"
	"syscall"
	"testing"
)

// TestCopyWakePanicReachesCaller: an End's Wake that panics, which Copy
// calls from another goroutine when its context ends, does not end the
// process from there: Copy panics with the same value in its caller's
// goroutine once the copy has returned (here when the source's peer
// closes, the wait the Wake was to end), as a panic of the caller's
// own code in Copy's goroutine would, and the Ends' Reset has run.
// Before, the panic ended the process from the goroutine of
// context.AfterFunc.
func TestCopyWakePanicReachesCaller(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			a, peer := connPair(t, network)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()
			src, dst := endOf(t, a.(syscall.Conn), true), endOf(t, w, false)
			woke := make(chan struct{})
			src.Wake = func() {
				close(woke)
				panic("Wake")
			}
			reset := 0
			src.Reset = func() { reset++ }
			ctx, cancel := context.WithCancel(context.Background())
			pool := NewPool(1<<16, 2)
			defer pool.Close()
			got := make(chan any, 1)
			go func() {
				defer func() { got <- recover() }()
				Copy(ctx, dst, src, -1, pool)
			}()
			// Once a byte went through, the copy waits for the next.
			if _, err := peer.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(r, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			cancel()
			<-woke
			peer.Close() // EOF: the copy returns
			if p := <-got; p != "Wake" {
				t.Fatalf("Copy's caller recovered %v; want the Wake's panic", p)
			}
			if reset != 1 {
				t.Errorf("Reset called %d times; want once", reset)
			}
		})
	}
}
