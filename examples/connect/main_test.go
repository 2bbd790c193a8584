package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

// startProxy serves a Proxy on its own engine on 127.0.0.1 (port 0). At
// the end of the test the server, the proxy and the engine are closed,
// in that order, and no descriptor opened since the start may be left.
func startProxy(t *testing.T) (p *Proxy, e *pipes.Engine, addr string) {
	t.Helper()
	fdtest.Check(t)
	e, err := pipes.NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	p = NewProxy(e)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
		p.Close()
		if err := e.Close(); err != nil {
			t.Errorf("engine Close: %v", err)
		}
	})
	return p, e, ln.Addr().String()
}

// waitIdle fails t unless every tunnel has ended within 5 s.
func waitIdle(t *testing.T, p *Proxy) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.Active() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d tunnels still open", p.Active())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// clientVia returns an http.Client that reaches https targets through the
// proxy at addr with CONNECT, trusting target's certificate, and records
// the status of each CONNECT answer.
func clientVia(t *testing.T, addr string, target *httptest.Server) (*http.Client, *http.Transport, *connectStatuses) {
	t.Helper()
	proxyURL := &url.URL{Scheme: "http", Host: addr}
	tr := target.Client().Transport.(*http.Transport).Clone() // trusts target's certificate
	tr.Proxy = http.ProxyURL(proxyURL)
	st := &connectStatuses{}
	tr.OnProxyConnectResponse = func(_ context.Context, _ *url.URL, _ *http.Request, res *http.Response) error {
		st.add(res.StatusCode)
		return nil
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, tr, st
}

type connectStatuses struct {
	mu sync.Mutex
	s  []int
}

func (c *connectStatuses) add(code int) { c.mu.Lock(); c.s = append(c.s, code); c.mu.Unlock() }

func (c *connectStatuses) get() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.s...)
}

// hashServer is an https target: it answers a request whose body it read
// in full with the body's SHA-256 in X-Body-Sha256 and a reply of the
// size asked for in ?n=, random bytes from ?seed=.
func hashServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		if _, err := io.Copy(h, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		seed, _ := strconv.Atoi(r.URL.Query().Get("seed"))
		w.Header().Set("X-Body-Sha256", hex.EncodeToString(h.Sum(nil)))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(randomBytes(n, byte(seed)))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestConnectHTTPS fetches from an https server through the proxy with
// Go's own client (Transport.Proxy: CONNECT, then TLS inside the tunnel),
// for empty, small and 4 MiB bodies in both directions, one client after
// the other on a kept-alive tunnel and four at once, and checks every
// byte by SHA-256. On Linux the tunnels' bytes go through the kernel.
func TestConnectHTTPS(t *testing.T) {
	p, e, addr := startProxy(t)
	target := hashServer(t)
	client, tr, statuses := clientVia(t, addr, target)

	fetch := func(size int, seed byte) error {
		body := randomBytes(size, seed)
		u := fmt.Sprintf("%s/?n=%d&seed=%d", target.URL, size, seed+1)
		res, err := client.Post(u, "application/octet-stream", strings.NewReader(string(body)))
		if err != nil {
			return err
		}
		defer res.Body.Close()
		h := sha256.New()
		n, err := io.Copy(h, res.Body)
		if err != nil {
			return fmt.Errorf("%d bytes: reading the reply: %v", size, err)
		}
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("%d bytes: status %s", size, res.Status)
		}
		if want := sha256.Sum256(body); res.Header.Get("X-Body-Sha256") != hex.EncodeToString(want[:]) {
			return fmt.Errorf("%d bytes: the target received a different body", size)
		}
		if want := sha256.Sum256(randomBytes(size, seed+1)); n != int64(size) || [32]byte(h.Sum(nil)) != want {
			return fmt.Errorf("%d bytes: the reply (%d bytes) differs", size, n)
		}
		return nil
	}

	for i, size := range []int{0, 1234, 4 << 20} {
		if err := fetch(size, byte(10+i)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		wg.Go(func() { errs <- fetch(4<<20+i, byte(20+i)) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for _, code := range statuses.get() {
		if code != http.StatusOK {
			t.Errorf("CONNECT answered %d", code)
		}
	}
	if len(statuses.get()) == 0 {
		t.Fatal("the client never sent CONNECT")
	}

	// The client hangs up: its half-close reaches the target, whose
	// close ends the tunnel.
	tr.CloseIdleConnections()
	waitIdle(t, p)

	st := e.Stats()
	t.Logf("%d tunnels; engine %s: %+v", len(statuses.get()), e.Backend(), st)
	if runtime.GOOS == "linux" {
		// Two copies per tunnel, both between TCP sockets: spliced.
		if st.Userspace != 0 || st.Splice != st.Copies || st.Copies != 2*uint64(len(statuses.get())) {
			t.Errorf("tunnels not relayed in the kernel: %+v", st)
		}
	}
}

// echoServer accepts connections and echoes each to EOF, then closes it.
func echoServer(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				// Through a buffer: io.Copy between two TCPConns
				// splices through a pipe from Go's own pool, which
				// stays open after the test (fdtest would see it).
				io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c})
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln
}

// rawConnect sends a CONNECT for target to the proxy at addr, with early
// bytes right behind it in the same write, and returns the connection
// and the proxy's answer.
func rawConnect(t *testing.T, addr, target string, early []byte) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n"
	if _, err := c.Write(append([]byte(req), early...)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	return c, br, res
}

// TestConnectEarlyBytes: a client that sends its first bytes in the same
// segment as the CONNECT request (before the 200), as some TLS clients
// do; net/http buffers them before the hijack, and the proxy must forward
// them before relaying. A plain TCP echo target sends everything back.
func TestConnectEarlyBytes(t *testing.T) {
	p, _, addr := startProxy(t)
	echo := echoServer(t)
	early := []byte("early bytes, sent before the 200\n")
	rest := randomBytes(4<<20, 7)
	c, br, res := rawConnect(t, addr, echo.Addr().String(), early)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %s", res.Status)
	}
	go func() {
		c.Write(rest)
		c.(*net.TCPConn).CloseWrite() // the echo server reads EOF and closes
	}()
	got := sha256.New()
	n, err := io.Copy(got, br)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(append(append([]byte(nil), early...), rest...))
	if n != int64(len(early)+len(rest)) || [32]byte(got.Sum(nil)) != want {
		t.Fatalf("echo of %d bytes through the tunnel differs (got %d)", len(early)+len(rest), n)
	}
	waitIdle(t, p)
}

// TestConnectErrors: a refused target is 502 (to Go's client and to a
// raw one), a method other than CONNECT 405, a target without a port
// 400, and Close ends a tunnel in flight.
func TestConnectErrors(t *testing.T) {
	p, _, addr := startProxy(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close() // nothing listens there now: the dial is refused

	t.Run("refused/client", func(t *testing.T) {
		target := hashServer(t)
		client, _, statuses := clientVia(t, addr, target)
		res, err := client.Get("https://" + refused + "/")
		if err == nil {
			res.Body.Close()
			t.Fatal("a GET through a tunnel to a refused target succeeded")
		}
		if got := statuses.get(); len(got) != 1 || got[0] != http.StatusBadGateway {
			t.Fatalf("CONNECT answers %v, want [502] (client error: %v)", got, err)
		}
	})
	t.Run("refused/raw", func(t *testing.T) {
		_, _, res := rawConnect(t, addr, refused, nil)
		if res.StatusCode != http.StatusBadGateway {
			t.Fatalf("CONNECT to a refused target: %s, want 502", res.Status)
		}
	})
	t.Run("refused/early", func(t *testing.T) {
		// The client's bytes behind a failed CONNECT are not a request.
		_, br, res := rawConnect(t, addr, refused, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		io.Copy(io.Discard, res.Body)
		if res.StatusCode != http.StatusBadGateway || !res.Close {
			t.Fatalf("CONNECT to a refused target: %s, Close %v; want 502, true", res.Status, res.Close)
		}
		if rest, err := io.ReadAll(br); len(rest) != 0 {
			t.Fatalf("after the 502: %q, %v; want the connection closed", rest, err)
		}
	})
	t.Run("not-connect", func(t *testing.T) {
		res, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "CONNECT" {
			t.Fatalf("GET: %s, Allow %q; want 405, CONNECT", res.Status, res.Header.Get("Allow"))
		}
	})
	t.Run("no-port", func(t *testing.T) {
		_, _, res := rawConnect(t, addr, "127.0.0.1", nil)
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("CONNECT 127.0.0.1: %s, want 400", res.Status)
		}
	})
	t.Run("close", func(t *testing.T) {
		echo := echoServer(t)
		c, br, res := rawConnect(t, addr, echo.Addr().String(), []byte("x"))
		if res.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT: %s", res.Status)
		}
		if b, err := br.ReadByte(); err != nil || b != 'x' {
			t.Fatalf("echo: %q, %v", b, err)
		}
		if p.Active() != 1 {
			t.Fatalf("%d tunnels open, want 1", p.Active())
		}
		p.Close() // ends the tunnel in flight, and waits for it
		if p.Active() != 0 {
			t.Fatalf("%d tunnels after Close", p.Active())
		}
		// Cut short, the tunnel is reset, not ended with a FIN.
		if _, err := br.ReadByte(); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("client read after Close: %v, want ECONNRESET", err)
		}
		_, _, res = rawConnect(t, addr, echo.Addr().String(), nil)
		if res.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("CONNECT after Close: %s, want 503", res.Status)
		}
		c.Close()
	})
}

// TestConnectHalfCloseEarly: a client sends its CONNECT and its bytes
// and half-closes at once, before the proxy has answered. net/http reads
// that EOF behind the request before the hijack; it must reach the
// target as the end of the tunnel's bytes, not end the tunnel (nor the
// dial, which would answer 502). Repeated: whether net/http's read meets
// the EOF before the hijack is a race.
func TestConnectHalfCloseEarly(t *testing.T) {
	p, _, addr := startProxy(t)
	echo := echoServer(t)
	target := echo.Addr().String()
	for i := range 50 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		msg := fmt.Sprintf("request %d", i)
		if _, err := io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n"+msg); err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).CloseWrite()
		br := bufio.NewReader(c)
		res, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(br)
		c.Close()
		if res.StatusCode != http.StatusOK || string(b) != msg || err != nil {
			t.Fatalf("%d: %s, then %q, %v; want 200, then %q", i, res.Status, b, err, msg)
		}
	}
	waitIdle(t, p)
}

// TestConnectResetPassedOn: when one end of a tunnel resets, the other
// must see a reset too, not a FIN: a FIN would pass a stream cut short
// off as complete.
func TestConnectResetPassedOn(t *testing.T) {
	for _, resets := range []string{"client", "target"} {
		t.Run(resets, func(t *testing.T) {
			p, _, addr := startProxy(t)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			targetErr := fdtest.AcceptPeer(ln, resets == "target")
			c, br, res := rawConnect(t, addr, ln.Addr().String(), []byte("x"))
			if res.StatusCode != http.StatusOK {
				t.Fatalf("CONNECT: %s", res.Status)
			}
			fdtest.ExpectResetPassed(t, c, br, targetErr, resets == "client")
			waitIdle(t, p)
		})
	}
}
