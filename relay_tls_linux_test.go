//go:build !pipes_portable

package pipes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestRelayTLSCancelBeforeHandshake relays a plain connection whose peer
// sent nothing and half-closed with a *tls.Conn whose peer never answers
// a handshake. The direction into the *tls.Conn reaches EOF at once and
// must pass it on, which a *tls.Conn allows only after its handshake. The
// direction out of the *tls.Conn, whose Read runs that handshake, is held
// by the relay's test hook until the relay is cancelled, so that it
// starts with its context done and never reads. The relay must end with
// the context's error. It used to run the handshake itself for the EOF
// it passed on: nothing then woke that handshake's read from the silent
// peer, and the relay hung.
func TestRelayTLSCancelBeforeHandshake(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, server := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/tls-server=%v", ec.name, server), func(t *testing.T) {
				plain, plainPeer := tcpPair(t)
				x, y := tcpPair(t)
				closeAtEnd(t, plain, plainPeer, x, y)
				s, c := adv25TLS(t, x, y)
				end := net.Conn(c) // the relay's end; its peer (s) stays silent
				if server {
					end = s
				}
				if err := plainPeer.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				hold := RelayOption(func(c *relayConfig) {
					c.beforeCopy = func(dir int) {
						if dir == dirBToA { // reads end
							time.Sleep(50 * time.Millisecond)
							cancel()
						}
					}
				})
				res := startRelay(e, ctx, plain, end, hold)
				r, ok := recvBy(res, time.Now().Add(adv25Guard))
				if !ok {
					end.Close() // ends the hung relay, so that the test can end
					<-res
					t.Fatal("the relay did not end after its context was cancelled")
				}
				if !errors.Is(r.err, context.Canceled) {
					t.Fatalf("err = %v, want one matching context.Canceled", r.err)
				}
			})
		}
	}
}
