package main

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFileServerHeaderStall: a client that pipelines requests whose
// responses have no body, or a body the server writes with the headers
// (HEAD, 404, 405), and never reads them is cut off once sendTimeout
// passes without it taking any: its connection is closed. Before, only
// the bodies sent by send had a write deadline; the flush of the headers
// waited for room for as long as the client stayed connected, holding
// the connection, its goroutine and (for HEAD) the open file.
func TestFileServerHeaderStall(t *testing.T) {
	old := sendTimeout
	sendTimeout = 100 * time.Millisecond
	t.Cleanup(func() { sendTimeout = old })
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, req string }{
		{"HEAD", "HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"404", "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"405", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			base, s := serveDir(t, dir)
			conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// A small receive buffer, fixed before any byte comes (see
			// TestFileServerSendTimeout).
			if err := conn.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
				t.Fatal(err)
			}
			// The server serves the connection (the check below is not
			// of one not yet accepted).
			for s.mu.Lock(); len(s.conns) == 0; s.mu.Lock() {
				s.mu.Unlock()
				time.Sleep(time.Millisecond)
			}
			s.mu.Unlock()
			// Responses to far more than the kernel can buffer between
			// the two sockets; the client reads none of them.
			reqs := strings.Repeat(c.req, (64<<20)/len(c.req))
			wrote := make(chan error, 1)
			go func() { _, err := io.WriteString(conn, reqs); wrote <- err }()
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
				s.mu.Lock()
				open := len(s.conns)
				s.mu.Unlock()
				if open == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the connection of a client that reads nothing is still served")
				}
			}
			conn.Close()
			<-wrote
		})
	}
}
