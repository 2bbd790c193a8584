package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestFileServerHeaderStall: a client that pipelines requests whose
// responses have no body, or a body the server writes with the headers
// (HEAD, 404, 405), and never reads them is cut off once SendTimeout
// passes without it taking any: its connection is closed. Before, only
// the bodies sent by send had a write deadline; the flush of the headers
// waited for room for as long as the client stayed connected, holding
// the connection, its goroutine and (for HEAD) the open file.
func TestFileServerHeaderStall(t *testing.T) {
	dir := dirOf(t, map[string][]byte{"a": []byte("hello")})
	for _, c := range []struct{ name, req string }{
		{"HEAD", "HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"404", "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"405", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			base, s := serveDir(t, dir, func(s *Server) { s.SendTimeout = 100 * time.Millisecond })
			conn := dialSmallWindow(t, base)
			// The server serves the connection (the check below is not
			// of one not yet accepted).
			waitServed(t, s, 1, "the connection is not served")
			// Responses to far more than the kernel can buffer between
			// the two sockets; the client reads none of them.
			reqs := strings.Repeat(c.req, (64<<20)/len(c.req))
			wrote := make(chan error, 1)
			go func() { _, err := io.WriteString(conn, reqs); wrote <- err }()
			waitServed(t, s, 0, "the connection of a client that reads nothing is still served")
			conn.Close()
			<-wrote
		})
	}
}

// TestFileServerExpectContinue: a client that sends Expect:
// 100-continue waits for a 100 (Continue) before it sends the body; the
// server, which reads the body before it responds, must send one (RFC
// 9110, section 10.1.1). Before, each waited for the other: the client
// for its own timeout (curl waits 1 s, some clients for ever), the
// server for the idle timeout.
func TestFileServerExpectContinue(t *testing.T) {
	base, _ := startServer(t, map[string][]byte{"a": []byte("hello")})
	for _, c := range []struct {
		name, req string
		want      string // status of the final response
	}{
		{"GET", "GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n", "200 OK"},
		{"PUT", "PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\n", "405 Method Not Allowed"},
		{"chunked", "GET /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n", "200 OK"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, c.req); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(time.Minute)) // a hang fails, not waits
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusContinue {
				t.Fatalf("before the body: %v, %v; want 100 Continue", resp, err)
			}
			body := "abc"
			if strings.Contains(c.req, "chunked") {
				body = "3\r\nabc\r\n0\r\n\r\n"
			}
			if _, err := io.WriteString(conn, body); err != nil {
				t.Fatal(err)
			}
			if resp, err = http.ReadResponse(br, nil); err != nil || resp.Status != c.want {
				t.Fatalf("after the body: %v, %v; want %s", resp, err, c.want)
			}
		})
	}
}

// TestParseRangeEmpty: no range of an empty file is satisfiable, a
// suffix range included. Before, "bytes=-n" got a 206 whose
// Content-Range, "bytes 0--1/0", is no valid one.
func TestParseRangeEmpty(t *testing.T) {
	for _, v := range []string{"bytes=-1", "bytes=-5", "bytes=-0", "bytes=0-", "bytes=0-0"} {
		if s, l, p, ok := parseRange(v, 0); ok || p || s != 0 || l != 0 {
			t.Errorf("parseRange(%q, 0) = %d, %d, %v, %v; want 0, 0, false, false", v, s, l, p, ok)
		}
	}
	for _, v := range []string{"", "items=0-1", "bytes=0-1,2-3"} {
		if s, l, p, ok := parseRange(v, 0); !ok || p || s != 0 || l != 0 {
			t.Errorf("parseRange(%q, 0) = %d, %d, %v, %v; want 0, 0, false, true (the whole file)", v, s, l, p, ok)
		}
	}
}
