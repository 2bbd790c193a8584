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
	"strings"
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

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}

// startServer serves a temporary tree on 127.0.0.1, port 0.
func startServer(t *testing.T, files map[string][]byte, set ...func(*Server)) (base string, s *Server) {
	t.Helper()
	return serveDir(t, dirOf(t, files), set...)
}

// dirOf returns a new directory holding files, removed when the test
// ends.
func dirOf(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// serveDir serves dir on 127.0.0.1, port 0, until the test ends, with
// the server's fields set by set first.
func serveDir(t *testing.T, dir string, set ...func(*Server)) (base string, s *Server) {
	t.Helper()
	s, err := NewServer(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range set {
		f(s)
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
	for _, p := range []string{"/missing", "/", "/../../etc/passwd", "/small.txt/x"} {
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

// TestFileServerRawConn sends raw requests on one connection and reads
// the responses in turn (a HEAD response has no body): the statuses must
// be want's, and the last must close the connection where closes says so.
func TestFileServerRawConn(t *testing.T) {
	base, _ := startServer(t, map[string][]byte{"a": []byte("a")})
	const get = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	// More than the socket buffers hold: the write fails if the server
	// stops reading.
	filler := strings.Repeat("x", 64<<20)
	for _, c := range []struct {
		name    string
		req     string
		methods []string // of the requests answered, in order
		want    []int
		closes  bool // the last response closes the connection, unread
	}{
		{"HEAD of a missing file, then GET",
			"HEAD /missing HTTP/1.1\r\nHost: x\r\n\r\n" + get,
			[]string{"HEAD", "GET"}, []int{404, 200}, false},
		{"HEAD of a directory, then GET",
			"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + get,
			[]string{"HEAD", "GET"}, []int{404, 200}, false},
		{"body drained, then GET",
			fmt.Sprintf("GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz%s", get),
			[]string{"GET", "GET"}, []int{200, 200}, false},
		// A body longer than the server drains ends the connection.
		{"body too long to drain",
			fmt.Sprintf("GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s%s", len(filler)+len(get), filler, get),
			[]string{"GET"}, []int{200}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			wrote := make(chan error, 1)
			go func() { _, err := io.WriteString(conn, c.req); wrote <- err }()
			br := bufio.NewReader(conn)
			var last *http.Response
			for i, want := range c.want {
				req := &http.Request{Method: c.methods[i]}
				resp, err := http.ReadResponse(br, req)
				if err != nil {
					t.Fatalf("response %d: %v", i, err)
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != want {
					t.Fatalf("response %d: %s (body: %v), want %d", i, resp.Status, err, want)
				}
				last = resp
			}
			if last.Close != c.closes {
				t.Fatalf("last response: Close %v, want %v", last.Close, c.closes)
			}
			if c.closes {
				if resp, err := http.ReadResponse(br, nil); err == nil {
					t.Fatalf("a response (%s) after the last, want the connection closed", resp.Status)
				}
			}
			conn.Close()
			if err := <-wrote; c.closes && err == nil {
				t.Errorf("the server read all %d bytes of the request", len(c.req))
			}
		})
	}
}

// TestFileServerLongHeader sends a request whose headers are longer than
// maxHeaderBytes: it must get 431, never be served.
func TestFileServerLongHeader(t *testing.T) {
	base, _ := startServer(t, map[string][]byte{"a": []byte("a")})
	conn, wrote := dialSending(t, base, "GET /a HTTP/1.1\r\nHost: x\r\nX-Long: "+strings.Repeat("x", 2*maxHeaderBytes)+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("%d bytes of headers: %v, %v; want 431", 2*maxHeaderBytes, resp, err)
	}
	conn.Close()
	<-wrote
}

// TestFileServerHTTP10 checks the Connection header of responses to
// HTTP/1.0 requests: an HTTP/1.0 client takes a response without
// "keep-alive" for the last on its connection, so a server that keeps
// the connection must say so.
func TestFileServerHTTP10(t *testing.T) {
	base, _ := startServer(t, map[string][]byte{"a": []byte("a")})
	for _, c := range []struct {
		method, path, conn string // of the request
		code               int
		want               string // the response's Connection
	}{
		{"GET", "/a", "keep-alive", 200, "keep-alive"},
		{"HEAD", "/a", "keep-alive", 200, "keep-alive"},
		{"GET", "/missing", "keep-alive", 404, "keep-alive"},
		{"HEAD", "/missing", "keep-alive", 404, "keep-alive"},
		{"POST", "/a", "keep-alive", 405, "keep-alive"},
		{"GET", "/a", "", 200, "close"},
	} {
		t.Run(c.method+" "+c.path+" "+c.conn, func(t *testing.T) {
			conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "%s %s HTTP/1.0\r\nConnection: %s\r\n\r\n", c.method, c.path, c.conn)
			resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: c.method})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := resp.Header.Get("Connection")
			if resp.Close {
				got = "close" // ReadResponse takes it out of the header
			}
			if resp.StatusCode != c.code || got != c.want {
				t.Errorf("%s, Connection %q; want %d, %q", resp.Status, got, c.code, c.want)
			}
		})
	}
}

// TestFileServerIfRange resumes a download: Range applies only where
// If-Range names the file's Last-Modified; otherwise the whole file is
// sent, never a part of a version the client does not have.
func TestFileServerIfRange(t *testing.T) {
	body := []byte("0123456789")
	base, _ := startServer(t, map[string][]byte{"f": body})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	resp, err := client.Get(base + "/f")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mod := resp.Header.Get("Last-Modified")
	modTime, err := http.ParseTime(mod)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ifRange string
		code    int
		want    string
	}{
		{"", 206, "56789"},
		{mod, 206, "56789"},
		{modTime.Add(-time.Hour).Format(http.TimeFormat), 200, string(body)},
		{`"some-etag"`, 200, string(body)},
		{`W/"weak"`, 200, string(body)},
		{"not a date", 200, string(body)},
	} {
		req, err := http.NewRequest("GET", base+"/f", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Range", "bytes=5-")
		if c.ifRange != "" {
			req.Header.Set("If-Range", c.ifRange)
		}
		resp, b := get(t, client, req)
		if resp.StatusCode != c.code || string(b) != c.want {
			t.Errorf("If-Range %q: %s %q; want %d %q", c.ifRange, resp.Status, b, c.code, c.want)
		}
	}
}

// rawResponse sends req on a new connection to base and reads the
// response to a request of method. A watchdog, not a measure: where the
// server never answers, the test fails after a minute instead of
// hanging.
func rawResponse(t *testing.T, base, method, req string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestFileServerFileSlash asks for regular files with a trailing slash:
// as net/http's FileServer, the server redirects (301) to the path
// without it, relative to the request's path (../name, the query kept),
// and never serves the file under the slashed name. A path that is not
// clean otherwise is sent to its clean form, which a relative reference
// would miss ("../a" from "/a//" is "/a/a"). Directories are not served
// (404), with or without the slash.
func TestFileServerFileSlash(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "d/f", "a b"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("file"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base, _ := serveDir(t, dir)
	for _, c := range []struct {
		target string // the request-target
		code   int
		loc    string // the Location of a redirect
	}{
		{"/a/", 301, "../a"},
		{"/d/f/", 301, "../f"},
		{"/a/?x=1&y", 301, "../a?x=1&y"},
		{"/a%20b/", 301, "../a%20b"},
		{"/a//", 301, "/a"},
		{"/d/../a/", 301, "/a"},
		{"/a", 200, ""},
		{"/d/f", 200, ""},
		{"/d/", 404, ""},
		{"/d", 404, ""},
		{"/", 404, ""},
	} {
		for _, method := range []string{"GET", "HEAD"} {
			resp := rawResponse(t, base, method, method+" "+c.target+" HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp.StatusCode != c.code || resp.Header.Get("Location") != c.loc {
				t.Errorf("%s %s: %s, Location %q; want %d, %q", method, c.target, resp.Status, resp.Header.Get("Location"), c.code, c.loc)
			}
		}
	}
	// Go's client follows the redirect to the file.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, b := get(t, &http.Client{Transport: tr}, mustRequest(t, "GET", base+"/d/f/?q"))
	if resp.StatusCode != 200 || string(b) != "file" || resp.Request.URL.Path != "/d/f" || resp.Request.URL.RawQuery != "q" {
		t.Errorf("GET /d/f/?q, redirects followed: %s %q at %s", resp.Status, b, resp.Request.URL)
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestFileServerLingeringClose ends connections whose request the server
// does not read to the end (431, 400, a body too long to drain) while the
// client is still sending, behind a response larger than the client's
// receive window: closing with the client's bytes unread sends a reset,
// which throws away the part of the response still in the server's send
// queue. The server half-closes instead and waits: the client must read
// every response whole, then the server's FIN. The wait here is longer
// than the test (only the client's close or Server.Close ends it, which
// the cleanup checks), and what the server discards is bounded: where
// the client sends more, the server does not read it all.
func TestFileServerLingeringClose(t *testing.T) {
	big := randomBytes(8 << 20)
	base, _ := startServer(t, map[string][]byte{"big": big, "a": []byte("a")}, func(s *Server) { s.linger = time.Hour })
	const getBig = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"
	filler := strings.Repeat("x", 64<<20)
	for _, c := range []struct {
		name    string
		req     string
		want    []int // the statuses, in order; 200 is big
		readAll bool  // the server reads the whole request
	}{
		{"431", getBig + "GET /a HTTP/1.1\r\nHost: x\r\nX-Long: " + filler + "\r\n\r\n",
			[]int{200, 431}, false},
		{"431, the rest read to the client's close",
			getBig + "GET /a HTTP/1.1\r\nHost: x\r\nX-Long: " + filler[:maxHeaderBytes+lingerBytes/2] + "\r\n\r\n",
			[]int{200, 431}, true},
		{"400", getBig + "BAD\r\n\r\n" + filler, []int{200, 400}, false},
		{"body too long to drain",
			fmt.Sprintf("GET /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(filler), filler),
			[]int{200}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// A small window: most of big is still in the server's send
			// queue when it has sent it.
			if err := conn.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
				t.Fatal(err)
			}
			wrote := make(chan error, 1)
			go func() { _, err := io.WriteString(conn, c.req); wrote <- err }()
			br := bufio.NewReader(conn)
			for i, want := range c.want {
				resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
				if err != nil {
					t.Fatalf("response %d: %v", i, err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != want || (want == 200 && !bytes.Equal(b, big)) {
					t.Fatalf("response %d: %s, %d bytes (%v); want %d", i, resp.Status, len(b), err, want)
				}
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("after the last response: %v, want EOF", err)
			}
			if c.readAll {
				if err := <-wrote; err != nil {
					t.Errorf("writing the request: %v", err)
				}
				return
			}
			conn.Close()
			if err := <-wrote; err == nil {
				t.Errorf("the server read all %d bytes of the request", len(c.req))
			}
		})
	}
}

// TestFileServerLingerEnds: a client that goes on sending after a 431
// and never closes is cut off once lingerTimeout has passed (the write
// fails), Close or no Close.
func TestFileServerLingerEnds(t *testing.T) {
	base, _ := startServer(t, map[string][]byte{"a": []byte("a")}, func(s *Server) { s.linger = time.Millisecond })
	conn, wrote := dialSending(t, base, "GET /a HTTP/1.1\r\nHost: x\r\nX-Long: "+strings.Repeat("x", 64<<20))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("%v, %v; want 431", resp, err)
	}
	if err := <-wrote; err == nil {
		t.Errorf("the server read all of the request")
	}
}

// dialSending connects to the server at base and sends req from a
// goroutine of its own, which reports the write's error on the channel.
// The connection is closed when the test ends.
func dialSending(t *testing.T, base, req string) (net.Conn, <-chan error) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	wrote := make(chan error, 1)
	go func() {
		_, err := io.WriteString(conn, req)
		wrote <- err
	}()
	return conn, wrote
}

// TestFileServerBodyStall: a request whose body never comes (a
// Content-Length, then nothing) is answered, and its connection closed,
// once the idle timeout has passed. Before, the drain of the body waited
// without a deadline and the connection was held for as long as the
// client kept it open.
func TestFileServerBodyStall(t *testing.T) {
	base, _ := startServer(t, map[string][]byte{"a": []byte("hello")}, func(s *Server) { s.IdleTimeout = 50 * time.Millisecond })
	conn, wrote := dialSending(t, base, "GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(time.Minute)) // a hang fails, not waits
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "hello" {
		t.Fatalf("body %q, %v", body, err)
	}
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the response: %v, want EOF (the connection closed)", err)
	}
}

// TestFileServerSendTimeout: a client that asks for a large file and
// never reads it is cut off once SendTimeout passes without it taking
// sendChunk bytes: its connection is closed. Before, the response's
// copy waited for room for as long as the client stayed connected,
// holding the connection, its goroutine and the file.
func TestFileServerSendTimeout(t *testing.T) {
	// Far more than the kernel can buffer between the two sockets: a
	// sparse file of 1 GiB.
	const size = 1 << 30
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "big"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, "big"), size); err != nil {
		t.Fatal(err)
	}
	base, s := serveDir(t, dir, func(s *Server) { s.SendTimeout = 100 * time.Millisecond })
	conn := dialSmallWindow(t, base)
	if _, err := io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The client reads the response's headers (the server serves it now:
	// the connection is tracked) and nothing more; the server must give
	// up on it.
	br := bufio.NewReader(conn)
	if _, err := http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	}
	waitServed(t, s, 0, "the connection of a client that reads nothing is still served")
	n, err := io.Copy(io.Discard, br)
	if n >= size {
		t.Fatalf("the client got the whole body (%d bytes, %v)", n, err)
	}
}

// dialSmallWindow connects to the server at base with a small receive
// buffer, fixed before any byte comes, so that the kernel's autotuning
// does not grow it (tcp_rmem allows 32 MiB): a client that reads nothing
// stalls the server's writes soon. It is closed when the test ends.
func dialSmallWindow(t *testing.T, base string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	conn := c.(*net.TCPConn)
	if err := conn.SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	return conn
}

// waitServed waits, for a minute at most, until s serves want
// connections (0: none, or at least one), and fails with why if it does
// not.
func waitServed(t *testing.T, s *Server, want int, why string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		s.mu.Lock()
		open := len(s.conns)
		s.mu.Unlock()
		if (want == 0) == (open == 0) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(why)
		}
	}
}
