// Command connect is an HTTP CONNECT proxy built on net/http and
// pipes.Relay: a client (a browser, curl -p, Go's http.Transport with
// Proxy set) asks it for a tunnel to host:port, and once the proxy has
// answered "200 Connection established" the bytes of the tunnel (most
// often TLS) go socket -> pipe -> socket with splice(2) on Linux and
// never enter the process.
//
// The handler checks the method, dials the target (502 Bad Gateway if
// that fails, 504 on a timeout), hijacks the client's connection, writes
// the 200, forwards any bytes the client sent after its request that
// net/http had already buffered, then relays both directions until both
// are done, and closes both connections (with a reset if the tunnel
// failed).
//
// It tunnels to any host:port it can reach, loopback included: in front
// of anything but a test, check the target against an allow-list first.
//
//	go run ./examples/connect -addr 127.0.0.1:3128
//	curl -p -x http://127.0.0.1:3128 https://example.com/
//
// With -debug, the engine's pipes.Stats (and the number of open tunnels)
// are served by expvar as JSON on http://DEBUG/debug/vars.
package main

import (
	"context"
	"errors"
	"expvar"
	"flag"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pipes-go/pipes"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:3128", "listen address")
	debug := flag.String("debug", "", "serve expvar (pipes.Stats, open tunnels) on this address, /debug/vars (empty: off)")
	flag.Parse()

	e := pipes.DefaultEngine()
	p := NewProxy(e)
	p.Log = log.Default()
	if *debug != "" {
		expvar.Publish("pipes", expvar.Func(func() any { return e.Stats() }))
		expvar.Publish("tunnels", expvar.Func(func() any { return p.Active() }))
		go func() { log.Fatal(http.ListenAndServe(*debug, expvar.Handler())) }()
	}
	srv := &http.Server{
		Addr:              *addr,
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
	}
	log.Printf("CONNECT proxy on %s (backend %s)", *addr, e.Backend())
	log.Fatal(srv.ListenAndServe())
}

// Proxy is an http.Handler that serves CONNECT requests with a tunnel
// relayed by pipes. http.Server.Shutdown and Close do not track hijacked
// connections: Proxy.Close ends the tunnels.
type Proxy struct {
	// DialTimeout bounds the dial to a target (default 10 s).
	DialTimeout time.Duration
	// Log, if set, gets a line per failed dial and per tunnel that
	// ends with an error.
	Log *log.Logger

	engine *pipes.Engine
	ctx    context.Context // cancelled by Close: ends every tunnel
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
	active atomic.Int64
}

// NewProxy returns a proxy that relays its tunnels on e (DefaultEngine
// if nil).
func NewProxy(e *pipes.Engine) *Proxy {
	if e == nil {
		e = pipes.DefaultEngine()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Proxy{engine: e, ctx: ctx, cancel: cancel}
}

// Active returns the number of tunnels open now.
func (p *Proxy) Active() int { return int(p.active.Load()) }

// Close ends every tunnel and waits for their handlers to return; later
// CONNECT requests get 503.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.cancel()
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

func (p *Proxy) begin() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	return true
}

func (p *Proxy) logf(format string, args ...any) {
	if p.Log != nil {
		p.Log.Printf(format, args...)
	}
}

// ServeHTTP tunnels a CONNECT request to its target; every other method
// gets 405.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		w.Header().Set("Allow", http.MethodConnect)
		http.Error(w, "this proxy only tunnels: CONNECT host:port", http.StatusMethodNotAllowed)
		return
	}
	if r.ProtoMajor != 1 {
		// HTTP/2 CONNECT streams cannot be hijacked.
		http.Error(w, "CONNECT over HTTP/1.1 only", http.StatusHTTPVersionNotSupported)
		return
	}
	// A CONNECT that fails ends the connection: the bytes a client sent
	// behind it were meant for the tunnel, not requests to the proxy.
	// (Hijacked, a tunnel's connection never sends this header.)
	w.Header().Set("Connection", "close")
	target := r.Host // the authority form: host:port
	if host, port, err := net.SplitHostPort(target); err != nil || host == "" || port == "" {
		http.Error(w, "CONNECT needs host:port", http.StatusBadRequest)
		return
	}
	if !p.begin() {
		http.Error(w, "proxy shutting down", http.StatusServiceUnavailable)
		return
	}
	defer p.wg.Done()

	// Not r.Context()'s cancellation: net/http cancels it when its
	// read behind the request meets EOF, which a client that half-closes
	// right after its request (CONNECT, its bytes, then shutdown(2))
	// sends before the hijack; that EOF is the tunnel's, to be passed
	// on. Close ends the tunnel; DialTimeout bounds the dial.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	defer context.AfterFunc(p.ctx, cancel)()

	timeout := p.DialTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	targetConn, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		p.logf("connect: dial %s: %v", target, err)
		status := http.StatusBadGateway
		if errors.Is(err, context.DeadlineExceeded) {
			status = http.StatusGatewayTimeout
		}
		http.Error(w, http.StatusText(status), status)
		return
	}
	defer targetConn.Close()

	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cannot hijack the connection", http.StatusInternalServerError)
		return
	}
	clientConn, rw, err := hj.Hijack()
	if err != nil {
		p.logf("connect: hijack: %v", err)
		return
	}
	defer clientConn.Close()
	p.active.Add(1)
	defer p.active.Add(-1)

	// The server may have set deadlines (ReadTimeout, WriteTimeout) on
	// the connection: a tunnel lives as long as its ends want.
	clientConn.SetDeadline(time.Time{})
	if _, err := clientConn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		return
	}
	// A client may send its first bytes (a TLS ClientHello) right
	// behind the request, without waiting for the 200: net/http has
	// read them into its buffer already. They go first.
	if n := rw.Reader.Buffered(); n > 0 {
		early, _ := rw.Reader.Peek(n)
		if _, err := targetConn.Write(early); err != nil {
			p.logf("connect: %s: forwarding %d early bytes: %v", target, n, err)
			return
		}
	}
	// Both directions at once; EOF on one is passed on with CloseWrite
	// while the other goes on. The defers close both connections.
	if _, _, err := p.engine.Relay(ctx, clientConn, targetConn); err != nil {
		if p.ctx.Err() == nil {
			p.logf("connect: tunnel to %s: %v", target, err)
		}
		// A tunnel that failed must not look like a clean end to either
		// peer, as a FIN would after a cut stream: the defers close both
		// with a reset.
		abort(clientConn)
		abort(targetConn)
	}
}

// abort has c's Close reset the connection (SO_LINGER 0) instead of
// ending it with a FIN.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
}
