// Command proxy is a TCP proxy that relays both directions of every
// connection with pipes.Relay: on Linux the bytes go socket -> pipe ->
// socket with splice(2) and never enter the process.
//
// When one side half-closes (EOF on its direction), Relay passes the
// close on (CloseWrite to the other side) and keeps relaying the other
// direction; when both directions are done, or either fails (a reset),
// Relay returns and the proxy closes both connections, after a failure
// with a reset (SO_LINGER 0), never a FIN. With -impl=iocopy
// it relays with io.Copy instead, for side-by-side benchmarks.
//
//	go run ./examples/proxy -addr 127.0.0.1:9090 -backend 127.0.0.1:8080
package main

import (
	"context"
	"flag"
	"io"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pipes-go/pipes"
	"github.com/pipes-go/pipes/examples/internal/accept"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9090", "listen address")
	backend := flag.String("backend", "127.0.0.1:8080", "address to relay to")
	impl := flag.String("impl", "pipes", "pipes (pipes.Relay), or iocopy (io.Copy)")
	stats := flag.Duration("stats", 0, "log the engine's Stats at this interval (0: never)")
	idle := flag.Duration("idle", 0, "end a relay after this long without a byte either way, as HAProxy's timeout client/server (0: never; pipes only)")
	flag.Parse()
	if *stats > 0 {
		go func() {
			for range time.Tick(*stats) {
				log.Printf("%+v", pipes.DefaultEngine().Stats())
			}
		}()
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("relaying %s -> %s (%s)", ln.Addr(), *backend, *impl)
	p := NewProxy(*backend, *impl == "iocopy")
	p.IdleTimeout = *idle
	log.Fatal(p.Serve(ln))
}

// Proxy relays each accepted connection to Backend.
type Proxy struct {
	// IdleTimeout, if positive, ends a relay that has moved no byte
	// either way for that long (pipes.RelayIdleTimeout), as HAProxy's
	// timeout client and timeout server do, so that peers that went
	// silent, or vanished without a FIN or a reset, do not hold their
	// connections forever. The io.Copy baseline ignores it. Set it
	// before Serve.
	IdleTimeout time.Duration

	backend string
	ioCopy  bool

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	lns    []net.Listener
	wg     sync.WaitGroup
	active atomic.Int64
}

// NewProxy relays to backend with pipes.Relay, or with io.Copy if ioCopy
// is set.
func NewProxy(backend string, ioCopy bool) *Proxy {
	ctx, cancel := context.WithCancel(context.Background())
	return &Proxy{backend: backend, ioCopy: ioCopy, ctx: ctx, cancel: cancel}
}

// Serve accepts connections on ln until it is closed or Close is called.
// An Accept that fails for want of descriptors or memory (EMFILE, which
// clients holding many connections cause) is retried after a pause, as
// net/http's Server.Serve does: it does not end Serve.
func (p *Proxy) Serve(ln net.Listener) error {
	p.mu.Lock()
	if p.ctx.Err() != nil {
		p.mu.Unlock()
		ln.Close()
		return net.ErrClosed
	}
	p.lns = append(p.lns, ln)
	p.mu.Unlock()
	var backoff accept.Backoff
	for {
		c, err := ln.Accept()
		if err != nil {
			if !backoff.Retry(err, p.ctx.Done()) {
				return err
			}
			continue // after Close, Accept fails for good
		}
		backoff.Reset()
		p.mu.Lock()
		if p.ctx.Err() != nil {
			p.mu.Unlock()
			c.Close()
			return net.ErrClosed
		}
		p.wg.Add(1)
		p.mu.Unlock()
		p.active.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.active.Add(-1)
			p.Relay(c)
		}()
	}
}

// Active returns the number of connections being relayed.
func (p *Proxy) Active() int { return int(p.active.Load()) }

// Close stops accepting, ends every relay, and waits for them.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.cancel()
	for _, ln := range p.lns {
		ln.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// Relay connects client to the backend and relays both directions until
// both are done or one fails, then closes both connections.
func (p *Proxy) Relay(client net.Conn) {
	defer client.Close()
	d := net.Dialer{Timeout: 5 * time.Second}
	backend, err := d.DialContext(p.ctx, "tcp", p.backend)
	if err != nil {
		return
	}
	defer backend.Close()
	if p.ioCopy {
		err = ioRelay(p.ctx, client, backend)
	} else {
		// Half-closes are passed on, a reset or p.Close ends both
		// directions; the connections are left for the defers to close.
		var opts []pipes.RelayOption
		if p.IdleTimeout > 0 {
			opts = append(opts, pipes.RelayIdleTimeout(p.IdleTimeout))
		}
		_, _, err = pipes.DefaultEngine().RelayWith(p.ctx, client, backend, opts...)
	}
	if err != nil {
		// A relay that failed must not look like a clean end to either
		// peer, as a FIN would after a truncated stream: the defers
		// close both with a reset.
		abort(client)
		abort(backend)
	}
}

// abort has c's Close reset the connection (SO_LINGER 0) instead of
// ending it with a FIN.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
}

// ioRelay is pipes.Relay on io.Copy, the baseline: a goroutine per
// direction, CloseWrite on EOF, and on an error or the end of ctx a
// deadline in the past on both connections to end the other direction.
// It returns the first error, or nil if both directions reached EOF.
func ioRelay(ctx context.Context, a, b net.Conn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		a.SetDeadline(time.Unix(1, 0))
		b.SetDeadline(time.Unix(1, 0))
	})
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	errs := make(chan error, 2)
	pass := func(dst, src net.Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		if err == nil {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				err = cw.CloseWrite() // the peer reads EOF
			}
		}
		if err != nil {
			errs <- err
			cancel()
		}
	}
	go pass(b, a)
	pass(a, b)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return ctx.Err()
	}
}
