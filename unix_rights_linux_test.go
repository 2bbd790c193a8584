//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestAdv29UnixRights copies and relays a unix stream whose writer
// interleaves SCM_RIGHTS messages with its bytes: the copy delivers the
// bytes as io.Copy does (the descriptors are the kernel's to drop: no
// read of the copy, splice(2) or the probe after it, takes one into
// this process, which fdtest.Check would find).
func TestAdv29UnixRights(t *testing.T) {
	fdtest.Check(t)
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	// feed writes 50 messages, every third with a descriptor, then
	// half-closes; it returns what it wrote.
	feed := func(c *net.UnixConn) <-chan []byte {
		ch := make(chan []byte, 1)
		go func() {
			var sent []byte
			for i := range 50 {
				msg := relayData(100+i*500, byte(i))
				var oob []byte
				if i%3 == 0 {
					oob = syscall.UnixRights(int(devNull.Fd()))
				}
				if _, _, err := c.WriteMsgUnix(msg, oob, nil); err != nil {
					t.Error(err)
					break
				}
				sent = append(sent, msg...)
			}
			c.CloseWrite()
			ch <- sent
		}()
		return ch
	}
	readAll := func(r io.Reader) <-chan []byte {
		ch := make(chan []byte, 1)
		go func() { b, _ := io.ReadAll(r); ch <- b }()
		return ch
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, dk := range []string{"unix", "tcp", "pipe"} {
			t.Run(ec.name+"/copy-to-"+dk, func(t *testing.T) {
				src, w := unixPair(t)
				closeAtEnd(t, src, w)
				var dst io.Writer
				var peer io.Reader
				var closeDst func()
				switch dk {
				case "unix":
					d, p := unixPair(t)
					closeAtEnd(t, d, p)
					dst, peer, closeDst = d, p, func() { d.CloseWrite() }
				case "tcp":
					d, p := tcpPair(t)
					closeAtEnd(t, d, p)
					dst, peer, closeDst = d, p, func() { d.CloseWrite() }
				case "pipe":
					r, pw, err := os.Pipe()
					if err != nil {
						t.Fatal(err)
					}
					closeAtEnd(t, r, pw)
					dst, peer, closeDst = pw, r, func() { pw.Close() }
				}
				sent, got := feed(w), readAll(peer)
				n, err := e.CopyContext(context.Background(), dst, src)
				closeDst()
				want, g := <-sent, <-got
				if err != nil || n != int64(len(want)) || !bytes.Equal(g, want) {
					t.Fatalf("n=%d err=%v: the peer got %d of %d bytes (equal: %v)", n, err, len(g), len(want), bytes.Equal(g, want))
				}
			})
		}
		t.Run(ec.name+"/relay", func(t *testing.T) {
			a, pa := unixPair(t)
			b, pb := unixPair(t)
			closeAtEnd(t, a, pa, b, pb)
			sentA, sentB := feed(pa), feed(pb)
			gotA, gotB := readAll(pa), readAll(pb)
			aToB, bToA, err := e.Relay(context.Background(), a, b)
			wantA, wantB := <-sentA, <-sentB
			g1, g2 := <-gotB, <-gotA
			if err != nil || aToB != int64(len(wantA)) || bToA != int64(len(wantB)) ||
				!bytes.Equal(g1, wantA) || !bytes.Equal(g2, wantB) {
				t.Fatalf("relay: %d, %d, %v; peers got %d of %d and %d of %d", aToB, bToA, err, len(g1), len(wantA), len(g2), len(wantB))
			}
		})
	}
}
