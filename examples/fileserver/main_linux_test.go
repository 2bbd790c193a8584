package main

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestFileServerSpecialFiles asks for files that are neither regular
// files nor directories: each gets 404, the server never waits in
// open(2) for a fifo's writer, and Close (in the cleanup) returns. The
// last cases swap a fifo and a socket in for a regular file between the
// server's stat and its open.
func TestFileServerSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	at := func(name string) string { return filepath.Join(dir, name) }
	for _, name := range []string{"fifo", "fifo2"} {
		if err := syscall.Mkfifo(at(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"a", "swap-fifo", "swap-sock"} {
		if err := os.WriteFile(at(name), []byte("a"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("fifo", at("link")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sock", "sock2"} {
		ln, err := net.Listen("unix", at(name))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
	}
	device := true
	if err := syscall.Mknod(at("null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
		device = false // /dev/null's numbers; mknod(2) needs CAP_MKNOD
	}
	swaps := map[string]string{"swap-fifo": "fifo2", "swap-sock": "sock2"} // name: what replaces it
	base, _ := serveDir(t, dir, func(s *Server) {
		s.statted = func(name string) {
			if by, ok := swaps[name]; ok {
				os.Rename(at(by), at(name))
			}
		}
	})
	// A server blocked in open(2) of a fifo (a failure) waits for a
	// writer: give it one before Close, a cleanup of serveDir's that
	// runs after this one.
	t.Cleanup(func() {
		for _, name := range []string{"fifo", "swap-fifo"} {
			if f, err := os.OpenFile(at(name), os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
		}
	})
	for _, c := range []struct {
		name, path string
		skip       bool
	}{
		{"fifo", "/fifo", false},
		{"symlink to a fifo", "/link", false},
		{"unix socket", "/sock", false},
		{"character device", "/null", !device},
		{"fifo swapped in after the stat", "/swap-fifo", false},
		{"socket swapped in after the stat", "/swap-sock", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.skip {
				t.Skip("cannot make one here")
			}
			for _, method := range []string{"GET", "HEAD"} {
				resp := rawResponse(t, base, method, method+" "+c.path+" HTTP/1.1\r\nHost: x\r\n\r\n")
				if resp.StatusCode != http.StatusNotFound {
					t.Errorf("%s %s: %s, want 404", method, c.path, resp.Status)
				}
			}
		})
	}
	// The regular file next to them is served.
	if resp := rawResponse(t, base, "GET", "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /a: %s, want 200", resp.Status)
	}
}
