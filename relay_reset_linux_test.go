//go:build !pipes_portable

package pipes

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
)

// adv32TLS is adv25TLS with both handshakes complete.
func adv32TLS(t *testing.T, s, c net.Conn) (server, client *tls.Conn) {
	t.Helper()
	server, client = adv25TLS(t, s, c)
	done := make(chan error, 1)
	go func() { done <- client.Handshake() }()
	if err := server.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return server, client
}

// TestAdv32ResetTLSNotPassedOn: a's peer resets while the relay writes
// to a; the write (b->a) takes the reset, and direction a->b, reading a
// next, reads EOF. That EOF must not be passed on to b's peer as a
// clean end.
func TestAdv32ResetTLSNotPassedOn(t *testing.T) {
	for _, kind := range []string{"tcp", "tls"} {
		t.Run(kind, func(t *testing.T) {
			e := newTestEngine(t)
			raw, praw := tcpPair(t)
			t.Cleanup(func() { raw.Close(); praw.Close() })
			var a io.ReadWriter = raw
			if kind == "tls" {
				a, _ = adv32TLS(t, raw, praw)
			}
			b, pb := tcpPair(t)
			t.Cleanup(func() { b.Close(); pb.Close() })
			go pb.Write(make([]byte, 64<<20)) // a's peer never reads
			bToAFailed, aToBDone := make(chan struct{}), make(chan struct{})
			order := RelayOption(func(c *relayConfig) {
				c.beforeCopy = func(dir int) {
					if dir == dirAToB {
						<-bToAFailed // read a only once the write took the reset
					}
				}
				c.beforeFinish = func(dir int, err error) {
					if dir == dirBToA {
						close(bToAFailed)
						<-aToBDone
					} else {
						close(aToBDone)
					}
				}
			})
			res := startRelay(e, context.Background(), a, b, order)
			waitSent(t, raw)
			praw.SetLinger(0)
			praw.Close()
			r := waitRelay(t, res)
			if !errors.Is(r.err, syscall.ECONNRESET) && !errors.Is(r.err, syscall.EPIPE) {
				t.Errorf("relay: %v, want the reset", r.err)
			}
			if _, err := b.Write([]byte("x")); err != nil {
				t.Errorf("b was shut down for writing (its peer read EOF): %v", err)
			}
		})
	}
}
