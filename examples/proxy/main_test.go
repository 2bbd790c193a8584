package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"

	"github.com/pipes-go/pipes"
	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestMain fails the run if a goroutine outlives the tests (the default
// engine's, which live for the process, are closed first).
func TestMain(m *testing.M) {
	fdtest.VerifyMain(m, func() error { return pipes.DefaultEngine().Close() })
}

func randomBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// backend reads each connection to EOF, reports the hash of what it
// read, then sends reply and closes.
type backend struct {
	ln    net.Listener
	got   chan [32]byte
	reply []byte
	reset bool // reset connections instead of replying
}

func startBackend(t *testing.T, reply []byte, reset bool) *backend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln, got: make(chan [32]byte, 64), reply: reply, reset: reset}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if b.reset {
					c.(*net.TCPConn).SetLinger(0)
					io.CopyN(io.Discard, c, 1)
					return
				}
				h := sha256.New()
				io.Copy(h, c)
				b.got <- [32]byte(h.Sum(nil))
				c.Write(b.reply)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return b
}

func startProxy(t *testing.T, backendAddr string, ioCopy bool) (*Proxy, string) {
	p := NewProxy(backendAddr, ioCopy)
	return p, serveProxy(t, p)
}

// serveProxy serves p on 127.0.0.1, port 0, until the test ends, and
// returns its address.
func serveProxy(t *testing.T, p *Proxy) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); p.Serve(ln) }()
	t.Cleanup(func() { p.Close(); <-done })
	return ln.Addr().String()
}

// waitIdle fails t unless every relay has ended within 5 s.
func waitIdle(t *testing.T, p *Proxy) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.Active() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d relays still running", p.Active())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestProxy relays a request up and a reply down, on several connections
// at once, then checks that every relay has torn down.
func TestProxy(t *testing.T) {
	for _, impl := range []string{"pipes", "iocopy"} {
		t.Run(impl, func(t *testing.T) {
			reply := randomBytes(6<<20+3, 2)
			be := startBackend(t, reply, false)
			p, addr := startProxy(t, be.ln.Addr().String(), impl == "iocopy")
			const clients = 8
			errs := make(chan error, clients)
			for i := range clients {
				go func() {
					errs <- func() error {
						c, err := net.Dial("tcp", addr)
						if err != nil {
							return err
						}
						defer c.Close()
						req := randomBytes(3<<20+i, byte(10+i))
						if _, err := c.Write(req); err != nil {
							return err
						}
						c.(*net.TCPConn).CloseWrite() // the backend reads EOF through the proxy
						got, err := io.ReadAll(c)
						if err != nil {
							return err
						}
						if sha256.Sum256(got) != sha256.Sum256(reply) {
							return fmt.Errorf("client %d: reply of %d bytes differs (want %d)", i, len(got), len(reply))
						}
						return nil
					}()
				}()
			}
			want := map[[32]byte]bool{}
			for i := range clients {
				want[sha256.Sum256(randomBytes(3<<20+i, byte(10+i)))] = true
			}
			for range clients {
				if err := <-errs; err != nil {
					t.Error(err)
				}
				select {
				case h := <-be.got:
					if !want[h] {
						t.Error("backend received a request that no client sent")
					}
				case <-time.After(10 * time.Second):
					t.Fatal("backend received nothing")
				}
			}
			waitIdle(t, p)
		})
	}
}

// TestProxyTeardown: a client that goes away early, and a backend that
// resets, end their relays.
func TestProxyTeardown(t *testing.T) {
	for _, impl := range []string{"pipes", "iocopy"} {
		t.Run(impl+"/client-closes", func(t *testing.T) {
			be := startBackend(t, randomBytes(1<<20, 3), false)
			p, addr := startProxy(t, be.ln.Addr().String(), impl == "iocopy")
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.Write([]byte("partial request"))
			time.Sleep(20 * time.Millisecond)
			c.Close()
			<-be.got // the backend saw EOF: the close was passed on
			waitIdle(t, p)
		})
		t.Run(impl+"/backend-resets", func(t *testing.T) {
			be := startBackend(t, nil, true)
			p, addr := startProxy(t, be.ln.Addr().String(), impl == "iocopy")
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("x"))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadAll(c); err != nil {
				t.Logf("client read after backend reset: %v", err)
			}
			waitIdle(t, p)
		})
		t.Run(impl+"/close", func(t *testing.T) {
			be := startBackend(t, nil, false)
			p, addr := startProxy(t, be.ln.Addr().String(), impl == "iocopy")
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("idle connection"))
			time.Sleep(20 * time.Millisecond)
			p.Close() // ends the relay in flight
			if p.Active() != 0 {
				t.Fatalf("%d relays after Close", p.Active())
			}
		})
	}
}

// TestProxyResetPassedOn: when one peer resets, the relay fails, and the
// other peer must see a reset too, not a FIN: a FIN would pass a
// truncated stream off as complete.
func TestProxyResetPassedOn(t *testing.T) {
	for _, impl := range []string{"pipes", "iocopy"} {
		for _, resets := range []string{"client", "backend"} {
			t.Run(impl+"/"+resets, func(t *testing.T) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				backendErr := fdtest.AcceptPeer(ln, resets == "backend")
				p, addr := startProxy(t, ln.Addr().String(), impl == "iocopy")
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := c.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				fdtest.ExpectResetPassed(t, c, c, backendErr, resets == "client")
				waitIdle(t, p)
			})
		}
	}
}

// TestProxyIdleTimeout: with IdleTimeout set, a relay whose peers both
// stay silent is ended, and the client's connection closed (with a
// reset: the relay failed), where it would be held as long as the peers
// stayed connected.
func TestProxyIdleTimeout(t *testing.T) {
	be := startBackend(t, nil, false) // reads until EOF: silent meanwhile
	p := NewProxy(be.ln.Addr().String(), false)
	p.IdleTimeout = 50 * time.Millisecond
	c, err := net.Dial("tcp", serveProxy(t, p))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello, then silence"))
	c.SetReadDeadline(time.Now().Add(time.Minute)) // a relay kept fails, not waits
	n, err := io.Copy(io.Discard, c)
	if n != 0 || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client read (%d, %v), want the connection ended", n, err)
	}
	waitIdle(t, p)
}
