// Command fileserver is a static HTTP/1.1 file server whose response
// bodies move from the file to the socket with pipes.Copy: on Linux the
// bytes go from the file to the socket with sendfile(2) (with many copies
// at once, the chunks not in the page cache are first read in through
// io_uring) and never enter the process.
//
// It speaks just enough HTTP/1.1 for static files: GET and HEAD,
// keep-alive and pipelining, and single byte ranges (206, 416) with
// If-Range. With -impl=nethttp it serves the same tree with net/http's FileServer
// (which uses sendfile(2)) for side-by-side benchmarks.
//
//	go run ./examples/fileserver -addr 127.0.0.1:8080 -root /srv/www
package main

import (
	"bufio"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"math"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pipes-go/pipes"
	"github.com/pipes-go/pipes/examples/internal/accept"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	root := flag.String("root", ".", "directory to serve")
	impl := flag.String("impl", "pipes", "pipes, or nethttp for net/http's FileServer")
	turns := flag.Int("send-turns", 0, "pipes.WithSendTurns: concurrent sendfile calls of cached chunks (0: GOMAXPROCS, < 0: no bound)")
	idle := flag.Duration("idle", DefaultIdleTimeout, "Server.IdleTimeout: the wait for a request, then for its body")
	send := flag.Duration("send-timeout", DefaultSendTimeout, "Server.SendTimeout: the time a client has to take each MiB of a response")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("serving %s on http://%s (%s)", *root, ln.Addr(), *impl)
	if *impl == "nethttp" {
		log.Fatal(http.Serve(ln, http.FileServer(http.Dir(*root))))
	}
	var engine *pipes.Engine // nil: DefaultEngine
	if *turns != 0 {
		if engine, err = pipes.NewEngine(pipes.WithSendTurns(*turns)); err != nil {
			log.Fatal(err)
		}
	}
	s, err := NewServer(*root, engine)
	if err != nil {
		log.Fatal(err)
	}
	s.IdleTimeout, s.SendTimeout = *idle, *send
	log.Fatal(s.Serve(ln))
}

// Server serves the files under one directory. Its zero value is not
// usable: build it with NewServer.
type Server struct {
	// IdleTimeout bounds the wait for the next request on a connection,
	// and then for the rest of its body, if it has one; 0 means
	// DefaultIdleTimeout. Set it before Serve.
	IdleTimeout time.Duration
	// SendTimeout bounds how long a client may take to read sendChunk
	// bytes of a response body, or a response's headers (and a body
	// written with them), as nginx's send_timeout bounds the time between
	// two writes: a client that stops reading is cut off, where it would
	// hold its connection, its goroutine and the open file for as long as
	// it stayed connected. 0 means DefaultSendTimeout. Set it before
	// Serve.
	SendTimeout time.Duration

	root   *os.Root
	engine *pipes.Engine
	// statted, if not nil, is called by open between its stat and its
	// open of name (the tests swap the file there).
	statted func(name string)
	// linger, if not 0, replaces lingerTimeout (for the tests).
	linger time.Duration

	mu     sync.Mutex
	lns    map[net.Listener]struct{}
	conns  map[net.Conn]struct{}
	closed bool
	done   chan struct{} // closed by Close: ends the lingering waits
	wg     sync.WaitGroup
}

// NewServer serves dir; requests cannot reach outside it (os.Root). A nil
// engine means pipes.DefaultEngine().
func NewServer(dir string, engine *pipes.Engine) (*Server, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	if engine == nil {
		engine = pipes.DefaultEngine()
	}
	return &Server{
		root:   root,
		engine: engine,
		lns:    map[net.Listener]struct{}{},
		conns:  map[net.Conn]struct{}{},
		done:   make(chan struct{}),
	}, nil
}

// Serve accepts connections on ln and serves each in its own goroutine
// until ln is closed or Close is called; it then returns net.ErrClosed.
// An Accept that fails for want of descriptors or memory (EMFILE, which
// clients holding many connections cause) is retried after a pause, as
// net/http's Server.Serve does: it does not end Serve.
func (s *Server) Serve(ln net.Listener) error {
	if !s.track(ln, nil) {
		ln.Close()
		return net.ErrClosed
	}
	var backoff accept.Backoff
	for {
		c, err := ln.Accept()
		if err != nil {
			if !backoff.Retry(err, s.done) {
				return err
			}
			continue // after Close, Accept fails for good
		}
		backoff.Reset()
		if !s.track(nil, c) {
			c.Close()
			return net.ErrClosed
		}
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.ServeConn(c)
		}()
	}
}

func (s *Server) track(ln net.Listener, c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if ln != nil {
		s.lns[ln] = struct{}{}
	}
	if c != nil {
		s.conns[c] = struct{}{}
		s.wg.Add(1)
	}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close closes the listeners and every connection, waits for their
// goroutines, and closes the root directory.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.closed {
		close(s.done)
	}
	s.closed = true
	for ln := range s.lns {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return s.root.Close()
}

// DefaultIdleTimeout and DefaultSendTimeout are the timeouts of a Server
// whose IdleTimeout or SendTimeout is 0.
const (
	DefaultIdleTimeout = 2 * time.Minute
	DefaultSendTimeout = time.Minute
)

func (s *Server) idleTimeout() time.Duration {
	return cmp.Or(s.IdleTimeout, DefaultIdleTimeout)
}

func (s *Server) sendTimeout() time.Duration {
	return cmp.Or(s.SendTimeout, DefaultSendTimeout)
}

// maxHeaderBytes bounds the request line and headers of one request, as
// net/http's Server.MaxHeaderBytes does (http.ReadRequest itself reads
// them whole, however long): a longer request gets 431 and the
// connection is closed.
const maxHeaderBytes = 1 << 20

// maxDrainBytes bounds the request body read and discarded to reach the
// next request (GET and HEAD use none); with more, the response closes
// the connection (lingering: see closeWriteAndWait).
const maxDrainBytes = 1 << 20

// lingerTimeout bounds the wait of closeWriteAndWait (net/http's
// rstAvoidanceDelay), where Server.linger is 0.
const lingerTimeout = 500 * time.Millisecond

// lingerBytes bounds what closeWriteAndWait reads and discards.
const lingerBytes = 256 << 10

// ServeConn serves the requests of one connection until the client closes
// it, asks for Connection: close, or a response fails. It closes c.
func (s *Server) ServeConn(c net.Conn) {
	defer c.Close()
	lr := &io.LimitedReader{R: c} // bounds each request's headers
	br := bufio.NewReaderSize(lr, 4<<10)
	bw := bufio.NewWriterSize(c, 4<<10)
	for {
		c.SetReadDeadline(time.Now().Add(s.idleTimeout()))
		lr.N = maxHeaderBytes
		req, err := http.ReadRequest(br)
		if err != nil {
			code := 0
			switch {
			case lr.N <= 0:
				code = http.StatusRequestHeaderFieldsTooLarge
			case !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded):
				code = http.StatusBadRequest
			}
			if code != 0 {
				// The rest of the request may still be on its way.
				c.SetWriteDeadline(time.Now().Add(s.sendTimeout()))
				writeError(bw, code, "close", true)
				s.closeWriteAndWait(c)
			}
			return
		}
		lr.N = math.MaxInt64
		keep, drained := !req.Close, true
		if req.Body != nil {
			// GET and HEAD carry no body; drain any so the next request
			// parses, or give up on the connection: a body that does not
			// come (a Content-Length never sent) within the idle timeout
			// does not hold the connection.
			// Not req.Body.Close: it reads the rest, however long.
			// A client that expects 100 (Continue) sends the body only
			// once it has one (RFC 9110, section 10.1.1).
			if req.ContentLength != 0 && req.ProtoAtLeast(1, 1) &&
				strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
				c.SetWriteDeadline(time.Now().Add(s.sendTimeout()))
				bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
				if bw.Flush() != nil {
					return
				}
			}
			n, err := io.Copy(io.Discard, io.LimitReader(req.Body, maxDrainBytes+1))
			if err != nil || n > maxDrainBytes {
				keep, drained = false, false
			}
		}
		c.SetReadDeadline(time.Time{})
		// The headers too are sent within SendTimeout: a client that
		// pipelines requests and reads no response is cut off even if
		// their bodies are empty (send sets its own deadlines).
		c.SetWriteDeadline(time.Now().Add(s.sendTimeout()))
		if !s.respond(c, bw, req, keep) {
			return
		}
		if !drained {
			s.closeWriteAndWait(c)
		}
		if !keep {
			return
		}
	}
}

// closeWriteAndWait ends a connection whose client may still be sending
// (the rest of a request the server answered without reading it whole),
// before the caller closes c. A close with received bytes unread makes
// the kernel send a reset, not a FIN, and drop what it has not yet sent
// of the response; some clients' kernels drop what they had received
// too, once a write fails on the reset. net/http's closeWriteAndWait
// half-closes and sleeps lingerTimeout; this one half-closes c (its FIN
// follows the response), then reads and discards until the client's
// EOF or reset, lingerTimeout, or lingerBytes, so that a client that
// closes ends the wait. Past lingerBytes it stops reading (the client's
// writes then wait on TCP's flow control) and waits out lingerTimeout,
// for the client to read the response. Close ends the wait: it closes c
// and s.done.
func (s *Server) closeWriteAndWait(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	deadline := time.Now().Add(cmp.Or(s.linger, lingerTimeout))
	c.SetReadDeadline(deadline)
	if _, err := io.CopyN(io.Discard, c, lingerBytes); err != nil {
		return // EOF, a reset, the deadline, or Close
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.done:
	}
}

// respond writes the response to req; it reports whether the connection
// is still usable.
func (s *Server) respond(c net.Conn, bw *bufio.Writer, req *http.Request, keep bool) bool {
	conn := connection(req, keep)
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return writeError(bw, http.StatusMethodNotAllowed, conn, true)
	}
	body := req.Method != http.MethodHead
	name := strings.TrimPrefix(path.Clean("/"+req.URL.Path), "/")
	if name == "" {
		name = "."
	}
	f, st, code := s.open(name)
	if f == nil {
		return writeError(bw, code, conn, body)
	}
	defer f.Close()
	if strings.HasSuffix(req.URL.Path, "/") {
		// A file named as a directory: net/http's FileServer redirects
		// to its name.
		return redirect(bw, fileLocation(req.URL, name), conn)
	}
	size := st.Size()
	rng := req.Header.Get("Range")
	if !ifRange(req.Header.Get("If-Range"), st.ModTime()) {
		rng = "" // the client's part is of another version: send it all
	}
	start, length, partial, ok := parseRange(rng, size)
	h := header{bw: bw}
	switch {
	case !ok:
		h.status(http.StatusRequestedRangeNotSatisfiable)
		h.add("Content-Range", fmt.Sprintf("bytes */%d", size))
		h.add("Content-Length", "0")
	case partial:
		h.status(http.StatusPartialContent)
		h.add("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, size))
		h.add("Content-Length", strconv.FormatInt(length, 10))
	default:
		h.status(http.StatusOK)
		h.add("Content-Length", strconv.FormatInt(length, 10))
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	h.add("Content-Type", ctype)
	h.add("Accept-Ranges", "bytes")
	h.add("Last-Modified", st.ModTime().UTC().Format(http.TimeFormat))
	h.add("Date", time.Now().UTC().Format(http.TimeFormat))
	if conn != "" {
		h.add("Connection", conn)
	}
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		return false
	}
	if !ok || !body || length == 0 {
		return true
	}
	if start > 0 { // the file was just opened: its offset is 0
		if _, err := f.Seek(start, io.SeekStart); err != nil {
			return false
		}
	}
	return s.send(c, f, length)
}

// sendChunk is how much of a body one SendTimeout covers: a client
// slower than sendChunk per SendTimeout (17 KiB/s by default) is cut off.
const sendChunk = 1 << 20

// send copies length bytes of f, at its offset, to c: file -> socket
// inside the kernel, a sendChunk at a time, each within SendTimeout
// (a write deadline on c, cleared after). It reports whether all of
// them were sent.
func (s *Server) send(c net.Conn, f *os.File, length int64) bool {
	defer c.SetWriteDeadline(time.Time{})
	lr := &io.LimitedReader{R: f}
	for sent := int64(0); sent < length; {
		c.SetWriteDeadline(time.Now().Add(s.sendTimeout()))
		lr.N = min(length-sent, sendChunk)
		n, err := s.engine.Copy(c, lr)
		sent += n
		if err != nil || lr.N > 0 { // an error, or the file got shorter
			return false
		}
	}
	return true
}

// open opens the regular file name under the root for reading, or returns
// the status of the response that refuses it: 404 for a file that does
// not exist, cannot be read, is outside the root, or is not a regular
// file. A directory is not served (no listings); neither is a fifo, a
// socket or a device, which net/http's FileServer does not refuse: it
// opens them with os.Open, which waits in open(2) for a fifo's writer,
// and a client could hold a connection, and Close, that way. They get
// 404, not 403, as files the server may not read do: a client cannot
// tell what is there from what is not.
//
// The stat before the open spares the open(2) of a device, which may act
// (a tape drive rewinds); the open is non-blocking all the same, for the
// name may have become a fifo since, and the opened file is checked
// again.
func (s *Server) open(name string) (*os.File, fs.FileInfo, int) {
	st, err := s.root.Stat(name)
	if err != nil {
		return nil, nil, openStatus(err)
	}
	if !st.Mode().IsRegular() {
		return nil, nil, http.StatusNotFound
	}
	if s.statted != nil {
		s.statted(name)
	}
	f, err := openNonblock(s.root, name)
	if err != nil {
		return nil, nil, openStatus(err)
	}
	if st, err = f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, nil, http.StatusNotFound
	}
	// read(2) of a regular file ignores O_NONBLOCK; io_uring did not
	// always: older kernels answer a ring read of a page not in the page
	// cache with EAGAIN instead of handing it to one of the ring's
	// workers, and the engine's ring path for cold files (docs/design.md)
	// would then read on this goroutine's thread (Linux 6.18 on ext4
	// reads it all the same). Leave it as os.Open does.
	if err := setBlocking(f); err != nil {
		f.Close()
		return nil, nil, http.StatusInternalServerError
	}
	return f, st, 0
}

// openStatus is the status of a response to a request for a path whose
// stat or open failed with err.
func openStatus(err error) int {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission),
		strings.Contains(err.Error(), "escapes"),
		errors.Is(err, syscall.ENOTDIR), // a path through a file: /a/x
		errors.Is(err, syscall.ENXIO):   // a socket (or a device without its driver), swapped in after the stat
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

// fileLocation is the Location of the redirect of a request for the
// regular file name whose path u.Path ends in a slash. Where u.Path is
// "/name/", it is "../base", relative as net/http's FileServer makes it
// (localRedirect: it serves under a prefix too); otherwise a relative
// reference may miss (from "/a//", "../a" is "/a/a"), and it is the clean
// path, as net/http's ServeMux redirects an unclean path. The query is
// kept; the path is escaped (it may hold any byte, CR and LF too).
func fileLocation(u *url.URL, name string) string {
	p := "/" + name
	if u.Path == p+"/" {
		p = "../" + path.Base(name)
	}
	return (&url.URL{Path: p, RawQuery: u.RawQuery}).String()
}

type header struct{ bw *bufio.Writer }

func (h header) status(code int) {
	fmt.Fprintf(h.bw, "HTTP/1.1 %d %s\r\n", code, http.StatusText(code))
}

func (h header) add(k, v string) {
	h.bw.WriteString(k)
	h.bw.WriteString(": ")
	h.bw.WriteString(v)
	h.bw.WriteString("\r\n")
}

// connection is the Connection header of the response to req: "close"
// if the connection closes after it (keep false), "keep-alive" if it
// stays open for an HTTP/1.0 client, which would otherwise take the
// response for the last (RFC 9112, Appendix C.2.2), as net/http does.
func connection(req *http.Request, keep bool) string {
	switch {
	case !keep:
		return "close"
	case !req.ProtoAtLeast(1, 1):
		return "keep-alive"
	}
	return ""
}

// writeError writes a short error response, with its body unless it
// answers a HEAD request (body false: the Content-Length is still the
// body's), and conn, if not empty, as its Connection header; it reports
// whether the connection is still usable.
func writeError(bw *bufio.Writer, code int, conn string, body bool) bool {
	text := http.StatusText(code) + "\n"
	h := header{bw: bw}
	h.status(code)
	h.add("Content-Type", "text/plain; charset=utf-8")
	h.add("Content-Length", strconv.Itoa(len(text)))
	if conn != "" {
		h.add("Connection", conn)
	}
	bw.WriteString("\r\n")
	if body {
		bw.WriteString(text)
	}
	return bw.Flush() == nil && conn != "close"
}

// redirect writes a 301 response to loc, without a body, and conn, if
// not empty, as its Connection header; it reports whether the
// connection is still usable.
func redirect(bw *bufio.Writer, loc, conn string) bool {
	h := header{bw: bw}
	h.status(http.StatusMovedPermanently)
	h.add("Location", loc)
	h.add("Content-Length", "0")
	if conn != "" {
		h.add("Connection", conn)
	}
	bw.WriteString("\r\n")
	return bw.Flush() == nil && conn != "close"
}

// ifRange reports whether an If-Range header v lets the Range header
// apply to a file last modified at mod (RFC 9110, section 13.1.5): v is
// absent, or the date of the file's Last-Modified. An entity-tag never
// matches (the server sends none), and neither does an earlier date: the
// client would splice a range of this file into a copy of another.
func ifRange(v string, mod time.Time) bool {
	if v == "" {
		return true
	}
	t, err := http.ParseTime(v)
	return err == nil && t.Equal(mod.Truncate(time.Second))
}

// parseRange parses a Range header of one byte range ("bytes=a-b",
// "bytes=a-", "bytes=-n") against a file of size bytes. It returns the
// whole file, not partial, for an absent, malformed or multi-range header
// (which RFC 9110 lets a server ignore), and ok == false when the range is
// unsatisfiable.
func parseRange(v string, size int64) (start, length int64, partial, ok bool) {
	spec, found := strings.CutPrefix(v, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, size, false, true
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, size, false, true
	}
	switch {
	case a == "":
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			return 0, size, false, true
		}
		if n == 0 || size == 0 { // no last byte to count back from
			return 0, 0, false, false
		}
		n = min(n, size)
		return size - n, n, true, true
	default:
		s, err := strconv.ParseInt(a, 10, 64)
		if err != nil || s < 0 {
			return 0, size, false, true
		}
		e := size - 1
		if b != "" {
			if e, err = strconv.ParseInt(b, 10, 64); err != nil || e < s {
				return 0, size, false, true
			}
			e = min(e, size-1)
		}
		if s >= size {
			return 0, 0, false, false
		}
		return s, e - s + 1, true, true
	}
}
