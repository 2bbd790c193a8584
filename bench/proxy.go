//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"
)

// The proxy scenario: n clients, each on one connection through a relay
// to a backend, send a request, read the whole response, and repeat.
//
// Two processes take part in a rep. The process that runs the rep (the
// -isolate child, or the bench itself without -isolate) is the relay:
// it accepts the clients' connections, dials the backend for each, and
// relays both directions with the strategy under test; the meter counts
// this process only. The load generator, the clients and the backend, is
// a second process it starts for the rep (the same executable, with
// proxyLoadEnv set): its CPU and syscalls are not the relay's. It is
// started after the syscall counters were opened, which inherit into new
// threads but not into child processes (inherit_thread).
//
// The two talk over the load generator's stdin and stdout, one JSON
// object a line:
//
//	relay -> load:  proxySpec
//	load -> relay:  {"backend": ADDR}      listening; the relay may dial it
//	load -> relay:  {"ready": true}        every client answered once
//	relay -> load:  "go"                   the timed window starts
//	load -> relay:  {"requests": [...]}    every client done; window ends
//
// then the load generator half-closes every client connection, checks
// that nothing follows the last response, and exits; the relay checks
// what each relay moved in each direction.

// proxyLoadEnv, set in the environment, makes the bench executable (or
// the bench test binary) the load generator of a proxy rep.
const proxyLoadEnv = "PIPES_BENCH_PROXY_LOAD"

// proxySpec is what the load generator of one rep does.
type proxySpec struct {
	Relay    string        `json:"relay"`    // address the clients dial
	N        int           `json:"n"`        // client connections
	Request  int           `json:"request"`  // request size
	Response int64         `json:"response"` // response size
	Duration time.Duration `json:"duration"` // of the timed window
	Verify   bool          `json:"verify"`   // compare every byte
	PipeSize int           `json:"pipe_size"`
}

// proxyMsg is a line from the load generator.
type proxyMsg struct {
	Backend  string  `json:"backend,omitempty"`
	Ready    bool    `json:"ready,omitempty"`
	Requests []int64 `json:"requests,omitempty"` // per client, in the window
}

// proxyWarmup is how many requests each client makes before the window.
const proxyWarmup = 1

// proxyVerifyTime bounds the window of a verify rep: it checks bytes,
// not speed.
const proxyVerifyTime = 200 * time.Millisecond

// planProxy adds the proxy scenario: a case per response size and N.
func (r *runner) planProxy() {
	cfg := r.cfg
	var cases []*benchCase
	for _, size := range cfg.proxySizes {
		for _, n := range cfg.proxyNs {
			cases = append(cases, &benchCase{
				scenario: "proxy", name: fmt.Sprintf("%s N=%d", fmtSize(size), n), pair: pair{kindTCP, kindTCP}, size: size, n: n,
				rep: func(s *strategy, verify bool) (repMetrics, error) {
					return r.proxyRep(s, size, n, verify)
				},
			})
		}
	}
	r.addScenario(scenarioInfo{
		name: "proxy",
		title: fmt.Sprintf("proxy: N clients, each on one loopback TCP connection through a relay to a backend: %s requests, responses by case, %v of requests per rep",
			fmtSize(int64(cfg.proxyReq)), cfg.proxyTime),
		notes: []string{
			"relay: per accepted client a dialled backend connection, each direction started with the strategy (pipes: Engine.CopyAsync; io.Copy strategies: a goroutine each, as examples/proxy); when a direction ends, CloseWrite on its destination",
			"io.Copy between two *net.TCPConn is spliced by Go itself (TCPConn.ReadFrom); io.Copy/userspace is the read/write loop",
			"clients and backend run in a separate load-generator process; CPU, syscalls, ctxsw and threads are the relay process's only: per request = delta over the timed window / requests answered in it",
			"req/s: responses read in full by the clients in the window / its wall time (every client finishes its request in flight); MB/s: requests + responses relayed",
			"backend: every request answered with a response from one preallocated buffer; clients drain responses by splice(2) to /dev/null; one untimed request per client before the window",
			fmt.Sprintf("every rep checks each relay's byte counts both ways; the verify rep (%v) also compares every request and response byte", min(cfg.proxyTime, proxyVerifyTime)),
		},
		table: proxyTable,
	}, cases...)
}

// relayResult is what one relay moved.
type relayResult struct {
	up, down int64 // client -> backend, backend -> client
	err      error
}

// relay relays client <-> backend with s as examples/proxy does: when a
// direction ends, its destination gets CloseWrite; when either fails, the
// other is cancelled. Both connections are closed at the end: after a
// clean end the client's plainly, since the FIN its CloseWrite queued may
// not be sent yet (see serve), and the backend's with SO_LINGER 0, since
// this end sent its FIN first and would keep its TIME_WAIT.
func relay(ctx context.Context, s *strategy, client, backend *net.TCPConn) (res relayResult) {
	defer func() {
		if res.err == nil {
			client.Close()
			closeAll([]io.Closer{backend})
		} else {
			closeAll([]io.Closer{client, backend})
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	up := s.startFlow(ctx, backend, client)
	down := s.startFlow(ctx, client, backend)
	upDone, downDone := up.Done(), down.Done()
	for upDone != nil || downDone != nil {
		select {
		case <-upDone:
			upDone = nil
			n, err := up.Wait()
			res.up = n
			if err != nil {
				res.err = errors.Join(res.err, fmt.Errorf("client -> backend: %w", err))
				cancel()
			} else {
				backend.CloseWrite()
			}
		case <-downDone:
			downDone = nil
			n, err := down.Wait()
			res.down = n
			if err != nil {
				res.err = errors.Join(res.err, fmt.Errorf("backend -> client: %w", err))
				cancel()
			} else {
				client.CloseWrite()
			}
		}
	}
	return res
}

// proxyRep runs one rep of the proxy scenario with this process as the
// relay; see the comment at the top of the file.
func (r *runner) proxyRep(s *strategy, size int64, n int, verify bool) (repMetrics, error) {
	if s.startFlow == nil {
		return repMetrics{}, fmt.Errorf("strategy %s cannot relay", s.name)
	}
	ln, err := listenLoopback(nil)
	if err != nil {
		return repMetrics{}, err
	}
	defer ln.Close()
	spec := proxySpec{
		Relay: ln.Addr().String(), N: n, Request: r.cfg.proxyReq, Response: size,
		Duration: r.cfg.proxyTime, Verify: verify, PipeSize: r.w.pipeSize,
	}
	if verify {
		spec.Duration = min(spec.Duration, proxyVerifyTime)
	}
	load, err := startProxyLoad(spec)
	if err != nil {
		return repMetrics{}, err
	}
	defer load.kill()

	var hello proxyMsg
	if err := load.recv(&hello); err != nil {
		return repMetrics{}, err
	}
	backendAddr, err := net.ResolveTCPAddr("tcp", hello.Backend)
	if err != nil {
		return repMetrics{}, fmt.Errorf("load generator's backend: %w", err)
	}
	// Accept the clients and relay each to a fresh backend connection.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	results := make(chan relayResult, n)
	acceptErr := make(chan error, 1)
	go func() {
		for i := range n {
			c, err := ln.AcceptTCP()
			if err != nil {
				acceptErr <- fmt.Errorf("accepting client %d of %d: %w", i, n, err)
				return
			}
			go func() {
				b, err := net.DialTCP("tcp", nil, backendAddr)
				if err != nil {
					c.Close()
					results <- relayResult{err: fmt.Errorf("dialling the backend: %w", err)}
					return
				}
				results <- relay(ctx, s, c, b)
			}()
		}
		acceptErr <- nil
	}()
	// fail ends the relays (the load generator's sockets close when it
	// dies) and reports err with the first relay error, often the cause.
	fail := func(err error) (repMetrics, error) {
		load.kill()
		ln.Close()
		timeout := time.After(time.Second)
	collect:
		for range n {
			select {
			case res := <-results:
				if res.err != nil {
					err = fmt.Errorf("%w; a relay: %w", err, res.err)
					break collect
				}
			case <-timeout:
				break collect
			}
		}
		cancel()
		return repMetrics{}, err
	}
	var ready proxyMsg
	if err := load.recv(&ready); err != nil || !ready.Ready {
		return fail(errors.Join(err, errors.New("load generator not ready")))
	}
	sp, err := r.m.begin()
	if err != nil {
		return fail(err)
	}
	defer sp.abort()
	if err := load.send("go"); err != nil {
		return fail(err)
	}
	var done proxyMsg
	if err := load.recv(&done); err != nil {
		return fail(err)
	}
	var reqs int64
	for _, k := range done.Requests {
		reqs += k
	}
	m, err := sp.end(reqs * (int64(spec.Request) + size))
	if err != nil {
		return fail(err)
	}
	m.Requests = reqs
	if r.m.sc != nil && r.m.sc.withChildren {
		m.Syscalls = nil // the load generator's would be in the count
	}
	if len(done.Requests) != n {
		return fail(fmt.Errorf("load generator reported %d clients, want %d", len(done.Requests), n))
	}

	// The load generator now half-closes every client; each relay ends.
	if err := load.wait(); err != nil {
		return fail(err)
	}
	if err := <-acceptErr; err != nil {
		return fail(err)
	}
	var errs []error
	var up, down int64
	req := int64(spec.Request)
	for i := range n {
		res := <-results
		up += res.up
		down += res.down
		switch {
		case res.err != nil:
			errs = append(errs, fmt.Errorf("relay %d: %w", i, res.err))
		case res.up%req != 0 || res.down != res.up/req*size:
			errs = append(errs, fmt.Errorf("relay %d moved %d bytes up, %d down: want a multiple of %d up and %d down per request", i, res.up, res.down, req, size))
		}
	}
	if len(errs) > 0 {
		return repMetrics{}, errors.Join(errs[:min(len(errs), 3)]...)
	}
	if total := reqs + int64(n*proxyWarmup); up != total*req || down != total*size {
		return repMetrics{}, fmt.Errorf("relays moved %d bytes up and %d down, want %d and %d for %d requests", up, down, total*req, total*size, total)
	}
	return m, nil
}

// listenLoopback listens on a TCP port of ip, or where ip is nil of an
// address of 127.0.0.0/8 picked at random, 127.0.0.1 if that one fails.
//
// Every proxy connection ends with a half-close from the client, passed
// on by the relay, so the client's end and the relay's end towards the
// backend both send the first FIN and keep a TIME_WAIT for a minute
// after the rep: some 2,000 per rep of 1,024 clients, in a port range of
// 28,000. On 127.0.0.1 alone a few runs in a row would leave no port to
// listen on; a rep on an address of its own shares no 4-tuple, and no
// bound address, with the reps before it.
func listenLoopback(ip net.IP) (*net.TCPListener, error) {
	if ip != nil {
		return net.ListenTCP("tcp", &net.TCPAddr{IP: ip})
	}
	ip = net.IPv4(127, byte(rand.IntN(256)), byte(rand.IntN(256)), byte(1+rand.IntN(254)))
	if ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip}); err == nil {
		return ln, nil
	}
	return net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
}

// proxyLoad is the relay's handle on its load-generator process.
type proxyLoad struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr bytes.Buffer
	once   sync.Once
	err    error
}

func startProxyLoad(spec proxySpec) (*proxyLoad, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	l := &proxyLoad{cmd: exec.Command(exe)}
	l.cmd.Env = append(os.Environ(), proxyLoadEnv+"=1")
	l.cmd.Stderr = &l.stderr
	if l.stdin, err = l.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := l.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	l.stdout = bufio.NewReader(out)
	if err := l.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the load generator: %w", err)
	}
	if err := json.NewEncoder(l.stdin).Encode(spec); err != nil {
		l.kill()
		return nil, err
	}
	return l, nil
}

// recv reads the next message; at EOF it waits for the process and
// returns why it ended.
func (l *proxyLoad) recv(m *proxyMsg) error {
	line, err := l.stdout.ReadBytes('\n')
	if err != nil {
		if werr := l.wait(); werr != nil {
			return werr
		}
		return fmt.Errorf("load generator: %w", io.ErrUnexpectedEOF)
	}
	if err := json.Unmarshal(line, m); err != nil {
		return fmt.Errorf("load generator said %q: %w", line, err)
	}
	return nil
}

func (l *proxyLoad) send(line string) error {
	_, err := io.WriteString(l.stdin, line+"\n")
	return err
}

// wait waits for the process to exit and returns its error with what it
// wrote on stderr.
func (l *proxyLoad) wait() error {
	l.once.Do(func() {
		_, _ = io.Copy(io.Discard, l.stdout) // Wait closes the pipe
		if err := l.cmd.Wait(); err != nil {
			msg := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l.stderr.String()), "bench: "))
			if msg == "" {
				msg = err.Error()
			}
			l.err = fmt.Errorf("load generator: %s", msg)
		}
	})
	return l.err
}

func (l *proxyLoad) kill() {
	if l.cmd.ProcessState == nil {
		_ = l.cmd.Process.Kill()
	}
	_ = l.wait()
}

// runProxyLoad is the load generator's side: the spec comes on in, the
// messages go to out.
func runProxyLoad(in io.Reader, out io.Writer) error {
	cmds := bufio.NewReader(in)
	var spec proxySpec
	line, err := cmds.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("reading the spec: %w", err)
	}
	if err := json.Unmarshal(line, &spec); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	if spec.N < 1 || spec.Request < 1 || spec.Response < 1 {
		return fmt.Errorf("bad spec %+v", spec)
	}
	// Two sockets per client (its own and the backend's), a pipe per
	// draining client.
	if _, err := raiseNoFileTo(uint64(4*spec.N + 256)); err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	lg, err := newLoadGen(spec)
	if err != nil {
		return err
	}
	defer lg.close()
	if err := enc.Encode(proxyMsg{Backend: lg.ln.Addr().String()}); err != nil {
		return err
	}
	// If the relay dies, its end of stdin closes: stop rather than hang.
	goCmd := make(chan struct{})
	go func() {
		if l, err := cmds.ReadString('\n'); err == nil && strings.TrimSpace(l) == "go" {
			close(goCmd)
			_, _ = io.Copy(io.Discard, cmds)
		}
		fmt.Fprintln(os.Stderr, "bench: load generator: the relay went away")
		os.Exit(3)
	}()
	counts, err := lg.run(enc, goCmd)
	if err != nil {
		return err
	}
	if err := enc.Encode(proxyMsg{Requests: counts}); err != nil {
		return err
	}
	return lg.finish()
}

// loadGen is the load generator of one rep: the backend and the clients.
type loadGen struct {
	spec     proxySpec
	request  []byte
	response []byte
	ln       *net.TCPListener
	drain    *drainer
	devNull  *os.File
	clients  []*net.TCPConn

	served  sync.WaitGroup
	mu      sync.Mutex
	servErr error
}

func newLoadGen(spec proxySpec) (*loadGen, error) {
	rng := rand.NewChaCha8([32]byte{'p', 'r', 'o', 'x', 'y'})
	lg := &loadGen{spec: spec, request: make([]byte, spec.Request), response: make([]byte, spec.Response)}
	rng.Read(lg.request)
	rng.Read(lg.response)
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	lg.devNull = null
	if spec.PipeSize <= 0 {
		spec.PipeSize = 64 << 10
	}
	lg.drain = &drainer{devNull: null, pipes: newPipeCache(spec.PipeSize, spec.N)}
	relay, err := net.ResolveTCPAddr("tcp", spec.Relay)
	if err != nil {
		null.Close()
		return nil, err
	}
	if lg.ln, err = listenLoopback(relay.IP); err != nil {
		null.Close()
		return nil, err
	}
	go lg.accept()
	return lg, nil
}

func (lg *loadGen) close() {
	lg.ln.Close()
	closeAll(closersOf(lg.clients))
	lg.devNull.Close()
}

func closersOf(cs []*net.TCPConn) []io.Closer {
	out := make([]io.Closer, 0, len(cs))
	for _, c := range cs {
		if c != nil {
			out = append(out, c)
		}
	}
	return out
}

func (lg *loadGen) serveFailed(err error) {
	lg.mu.Lock()
	if lg.servErr == nil {
		lg.servErr = err
	}
	lg.mu.Unlock()
}

// failed joins the backend's first error, often the cause, before the
// clients' (at most three).
func (lg *loadGen) failed(errs []error) error {
	var out []error
	for _, err := range errs {
		if err != nil && len(out) < 3 {
			out = append(out, err)
		}
	}
	if len(out) == 0 {
		return nil
	}
	lg.mu.Lock()
	defer lg.mu.Unlock()
	return errors.Join(append([]error{lg.servErr}, out...)...)
}

// accept serves the relay's backend connections until the listener closes.
func (lg *loadGen) accept() {
	for {
		c, err := lg.ln.AcceptTCP()
		if err != nil {
			return
		}
		lg.served.Add(1)
		go func() {
			defer lg.served.Done()
			if err := lg.serve(c); err != nil {
				lg.serveFailed(fmt.Errorf("backend: %w", err))
			}
		}()
	}
}

// serve answers each request on c with the response until c's EOF (which
// must fall between requests), then closes c, which sends its FIN.
//
// c is closed plainly there, not by closeAll: the FIN is not always sent
// at once, and a close with SO_LINGER 0 turns a FIN still queued into a
// reset (the kernel's TCP_DISCONNECT_WITH_DATA), which the relay reads as
// ECONNRESET instead of EOF. This end closes second, so it leaves no
// TIME_WAIT (the relay's and the clients' ends do: see listenLoopback).
// Only a failed exchange is aborted with a reset.
func (lg *loadGen) serve(c *net.TCPConn) error {
	if err := lg.answer(c); err != nil {
		closeAll([]io.Closer{c})
		return err
	}
	return c.Close()
}

// answer answers each request on c with the response until c's EOF.
func (lg *loadGen) answer(c *net.TCPConn) error {
	buf := make([]byte, len(lg.request))
	for {
		_, err := io.ReadFull(c, buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading a request: %w", err)
		}
		if lg.spec.Verify && !bytes.Equal(buf, lg.request) {
			return errors.New("request corrupted on the way")
		}
		if _, err := c.Write(lg.response); err != nil {
			return fmt.Errorf("writing a response: %w", err)
		}
	}
}

// exchange makes one request on c and reads the whole response.
func (lg *loadGen) exchange(c *net.TCPConn, fd rawFD, buf []byte) error {
	if _, err := c.Write(lg.request); err != nil {
		return fmt.Errorf("writing a request: %w", err)
	}
	if !lg.spec.Verify {
		n, err := lg.drain.discardN(fd, lg.spec.Response)
		if err == nil && n < lg.spec.Response {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return fmt.Errorf("reading a response (%d of %d bytes): %w", n, lg.spec.Response, err)
		}
		return nil
	}
	for off := 0; off < len(lg.response); {
		k, err := c.Read(buf[:min(len(buf), len(lg.response)-off)])
		if k > 0 && !bytes.Equal(buf[:k], lg.response[off:off+k]) {
			return fmt.Errorf("response corrupted at byte %d", off)
		}
		off += k
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return fmt.Errorf("reading a response (%d of %d bytes): %w", off, len(lg.response), err)
		}
	}
	return nil
}

// run connects the clients, has each make proxyWarmup requests, reports
// ready, and once goCmd closes has every client make requests until the
// window is over; it returns the requests of each client in the window.
func (lg *loadGen) run(enc *json.Encoder, goCmd <-chan struct{}) ([]int64, error) {
	n := lg.spec.N
	lg.clients = make([]*net.TCPConn, n)
	relay, err := net.ResolveTCPAddr("tcp", lg.spec.Relay)
	if err != nil {
		return nil, err
	}
	counts := make([]int64, n)
	errs := make([]error, n)
	var warm, wg sync.WaitGroup
	warm.Add(n)
	wg.Add(n)
	start := make(chan struct{})
	var deadline time.Time // set before start closes
	for i := range n {
		go func() {
			defer wg.Done()
			warmed := false
			defer func() {
				if !warmed {
					warm.Done()
				}
			}()
			c, err := net.DialTCP("tcp", nil, relay)
			if err != nil {
				errs[i] = fmt.Errorf("client %d: dialling the relay: %w", i, err)
				return
			}
			lg.clients[i] = c
			fd, err := newRawFD(c)
			if err != nil {
				errs[i] = err
				return
			}
			var buf []byte
			if lg.spec.Verify {
				buf = make([]byte, min(len(lg.response), 64<<10))
			}
			for range proxyWarmup {
				if err := lg.exchange(c, fd, buf); err != nil {
					errs[i] = fmt.Errorf("client %d, untimed request: %w", i, err)
					return
				}
			}
			warmed = true
			warm.Done()
			<-start
			for {
				if err := lg.exchange(c, fd, buf); err != nil {
					errs[i] = fmt.Errorf("client %d, request %d: %w", i, counts[i], err)
					return
				}
				counts[i]++
				if !time.Now().Before(deadline) {
					return
				}
			}
		}()
	}
	warm.Wait()
	if err := lg.failed(errs); err != nil {
		return nil, err
	}
	if err := enc.Encode(proxyMsg{Ready: true}); err != nil {
		return nil, err
	}
	<-goCmd
	deadline = time.Now().Add(lg.spec.Duration)
	close(start)
	wg.Wait()
	if err := lg.failed(errs); err != nil {
		return nil, err
	}
	return counts, nil
}

// finish half-closes every client, checks that no byte follows the last
// response and that every backend connection ended cleanly.
func (lg *loadGen) finish() error {
	var wg sync.WaitGroup
	errs := make([]error, len(lg.clients))
	for i, c := range lg.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.CloseWrite(); err != nil {
				errs[i] = err
				return
			}
			var b [1]byte
			n, err := c.Read(b[:])
			switch {
			case n > 0:
				errs[i] = fmt.Errorf("client %d: bytes after the last response", i)
			case err != io.EOF:
				errs[i] = fmt.Errorf("client %d: want EOF after the last response: %v", i, err)
			}
		}()
	}
	wg.Wait()
	lg.ln.Close()
	lg.served.Wait()
	if err := lg.failed(errs); err != nil {
		return err
	}
	lg.mu.Lock()
	defer lg.mu.Unlock()
	return lg.servErr
}

// discardN splices exactly n bytes of src (a socket) to /dev/null, fewer
// at EOF, through an intermediate pipe. The pipe is taken from the cache
// only inside the callback, never while waiting: thousands of idle
// drainers share a few.
func (d *drainer) discardN(src rawFD, n int64) (int64, error) {
	defer runtime.KeepAlive(src.owner)
	defer runtime.KeepAlive(d.devNull)
	null := int(d.devNull.Fd())
	var total int64
	for total < n {
		var k int
		err := src.read(func(fd int) error {
			p, err := d.pipes.get()
			if err != nil {
				return err
			}
			k, err = retryEINTR(func() (int, error) {
				return spliceN(fd, nil, p.w, nil, int(min(n-total, int64(d.pipes.size))), spliceFlags)
			})
			left := max(k, 0)
			for err == nil && left > 0 {
				var m int
				m, err = retryEINTR(func() (int, error) { return spliceN(p.r, nil, null, nil, left, spliceFlags) })
				left -= m
			}
			d.pipes.put(p, left == 0)
			return err
		})
		if k > 0 {
			total += int64(k)
		}
		if err != nil || k == 0 {
			return total, err
		}
	}
	return total, nil
}
