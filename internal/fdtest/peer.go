package fdtest

import (
	"io"
	"net"
	"testing"
)

// AcceptPeer accepts one connection on ln and plays the far peer of a
// relay test: with reset, it reads one byte and then closes with a reset
// (SO_LINGER 0), reporting nil; else it reads until EOF or an error and
// reports that error (nil at EOF). The channel gets exactly one value,
// the Accept's error if it fails.
func AcceptPeer(ln net.Listener, reset bool) <-chan error {
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		if reset {
			io.CopyN(io.Discard, c, 1)
			c.(*net.TCPConn).SetLinger(0)
			done <- nil
			return
		}
		_, err = io.Copy(io.Discard, c)
		done <- err
	}()
	return done
}

// ExpectResetPassed checks that a relay passed a reset on as a reset:
// with clientResets, it resets client and expects the far peer (peer,
// from AcceptPeer) to fail, not read EOF; else, the far peer having
// reset, it expects the client's read of the rest (from r: client, or a
// reader buffering it) to fail.
func ExpectResetPassed(t testing.TB, client net.Conn, r io.Reader, peer <-chan error, clientResets bool) {
	t.Helper()
	if clientResets {
		client.(*net.TCPConn).SetLinger(0)
		client.Close()
		if err := <-peer; err == nil {
			t.Error("the far peer read EOF after the client reset, want an error")
		}
		return
	}
	if err := <-peer; err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); err == nil {
		t.Error("the client read EOF after the far peer reset, want an error")
	}
}
