package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/pipes-go/pipes"
	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestMain fails the run if a goroutine outlives the tests (the default
// engine's, which live for the process, are closed first).
func TestMain(m *testing.M) {
	fdtest.VerifyMain(m, func() error { return pipes.DefaultEngine().Close() })
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}

// startServer serves a temporary tree on 127.0.0.1, port 0.
func startServer(t *testing.T, files map[string][]byte) (base string, s *Server) {
	t.Helper()
	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := NewServer(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		<-done
	})
	return "http://" + ln.Addr().String(), s
}

func get(t *testing.T, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestFileServer(t *testing.T) {
	big := randomBytes(24<<20 + 7)
	small := []byte("hello, pipes\n")
	base, _ := startServer(t, map[string][]byte{"big.bin": big, "small.txt": small})
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}

	newReq := func(method, path string, hdr ...string) *http.Request {
		req, err := http.NewRequest(method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return req
	}
	// Several rounds on keep-alive connections.
	for round := range 3 {
		resp, b := get(t, c, newReq("GET", "/big.bin"))
		if resp.StatusCode != 200 || resp.ContentLength != int64(len(big)) || sha256.Sum256(b) != sha256.Sum256(big) {
			t.Fatalf("round %d: big.bin: %s, %d bytes, match %v", round, resp.Status, len(b), bytes.Equal(b, big))
		}
		resp, b = get(t, c, newReq("GET", "/small.txt"))
		if resp.StatusCode != 200 || !bytes.Equal(b, small) || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Fatalf("small.txt: %s %q %q", resp.Status, b, resp.Header.Get("Content-Type"))
		}
	}
	ranges := []struct {
		hdr        string
		code       int
		start, end int // of big
	}{
		{"bytes=100-199", 206, 100, 200},
		{"bytes=20000000-", 206, 20000000, len(big)},
		{"bytes=-1000", 206, len(big) - 1000, len(big)},
		{"bytes=5-5", 206, 5, 6},
		{"bytes=0-99999999999", 206, 0, len(big)},
		{"bytes=1-2,5-6", 200, 0, len(big)}, // multi-range: ignored
		{fmt.Sprintf("bytes=%d-", len(big)), 416, 0, 0},
	}
	for _, r := range ranges {
		resp, b := get(t, c, newReq("GET", "/big.bin", "Range", r.hdr))
		if resp.StatusCode != r.code || !bytes.Equal(b, big[r.start:r.end]) {
			t.Errorf("Range %s: %s, %d bytes; want %d, %d bytes", r.hdr, resp.Status, len(b), r.code, r.end-r.start)
		}
	}
	resp, b := get(t, c, newReq("HEAD", "/big.bin"))
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(big)) || len(b) != 0 {
		t.Errorf("HEAD: %s, length %d, body %d", resp.Status, resp.ContentLength, len(b))
	}
	for _, p := range []string{"/missing", "/", "/../../etc/passwd"} {
		if resp, _ := get(t, c, newReq("GET", p)); resp.StatusCode != 404 {
			t.Errorf("GET %s: %s, want 404", p, resp.Status)
		}
	}
	if resp, _ := get(t, c, newReq("POST", "/small.txt")); resp.StatusCode != 405 {
		t.Errorf("POST: %s, want 405", resp.Status)
	}
	// Many clients at once.
	errs := make(chan error, 16)
	for range 16 {
		go func() {
			resp, err := c.Get(base + "/big.bin")
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			if err == nil && (n != int64(len(big)) || [32]byte(h.Sum(nil)) != sha256.Sum256(big)) {
				err = fmt.Errorf("got %d bytes, want %d", n, len(big))
			}
			errs <- err
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestFileServerRawTraversal sends a path the Go client would clean.
func TestFileServerRawTraversal(t *testing.T) {
	base, _ := startServer(t, map[string][]byte{"a": []byte("a")})
	conn, err := net.Dial("tcp", base[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /../../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(conn)
	for i, want := range []int{404, 200} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("pipelined request %d: %s, want %d", i, resp.Status, want)
		}
	}
}

func TestParseRange(t *testing.T) {
	for _, c := range []struct {
		v                  string
		start, length      int64
		partial, satisfied bool
	}{
		{"", 0, 10, false, true},
		{"bytes=0-0", 0, 1, true, true},
		{"bytes=-0", 0, 0, false, false},
		{"bytes=-20", 0, 10, true, true},
		{"bytes=9-", 9, 1, true, true},
		{"bytes=10-", 0, 0, false, false},
		{"bytes=5-3", 0, 10, false, true},
		{"bytes=x-3", 0, 10, false, true},
		{"items=0-1", 0, 10, false, true},
	} {
		s, l, p, ok := parseRange(c.v, 10)
		if s != c.start || l != c.length || p != c.partial || ok != c.satisfied {
			t.Errorf("parseRange(%q, 10) = %d, %d, %v, %v; want %d, %d, %v, %v", c.v, s, l, p, ok, c.start, c.length, c.partial, c.satisfied)
		}
	}
}
