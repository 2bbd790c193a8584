package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"

	"github.com/pipes-go/pipes/examples/internal/accept"
)

// TestFileServerAcceptFails: an Accept that fails for want of
// descriptors, which clients that hold many connections open can cause,
// does not end Serve: the connections after it are served. Before, Serve
// returned the error (and the command exited) at the first such failure.
func TestFileServerAcceptFails(t *testing.T) {
	dir := dirOf(t, map[string][]byte{"a": []byte("hello")})
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS} {
		t.Run(errno.Error(), func(t *testing.T) {
			s, err := NewServer(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := accept.ListenFailing(errno, 3)
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- s.Serve(ln) }()
			t.Cleanup(func() { s.Close(); <-served })
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got := make(chan string, 1)
			go func() {
				io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					got <- err.Error()
					return
				}
				b, _ := io.ReadAll(resp.Body)
				got <- resp.Status + " " + string(b)
			}()
			select {
			case err := <-served:
				served <- err // for the cleanup
				t.Fatalf("Serve returned %v after a failed Accept; want it to go on", err)
			case r := <-got:
				if r != "200 OK hello" {
					t.Fatalf("response %q; want \"200 OK hello\"", r)
				}
			}
		})
	}
}
