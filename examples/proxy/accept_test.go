package main

import (
	"bytes"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/pipes-go/pipes/examples/internal/accept"
)

// TestProxyAcceptFails: an Accept that fails for want of descriptors,
// which clients that hold many connections open can cause, does not end
// Serve: the connections after it are relayed. Before, Serve returned
// the error (and the command exited) at the first such failure.
func TestProxyAcceptFails(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS} {
		t.Run(errno.Error(), func(t *testing.T) {
			reply := randomBytes(1<<20, 3)
			be := startBackend(t, reply, false)
			p := NewProxy(be.ln.Addr().String(), false)
			ln, err := accept.ListenFailing(errno, 3)
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- p.Serve(ln) }()
			t.Cleanup(func() { p.Close(); <-served })
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got := make(chan []byte, 1)
			go func() {
				c.Write([]byte("request"))
				c.(*net.TCPConn).CloseWrite()
				b, _ := io.ReadAll(c)
				got <- b
			}()
			select {
			case err := <-served:
				served <- err // for the cleanup
				t.Fatalf("Serve returned %v after a failed Accept; want it to go on", err)
			case b := <-got:
				if !bytes.Equal(b, reply) {
					t.Fatalf("reply of %d bytes; want %d", len(b), len(reply))
				}
			}
		})
	}
}
