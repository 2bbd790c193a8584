//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Regression tests for the fault handling defects of the issue: pool
// exhaustion (1), blocking-mode descriptors (2), a closed *os.File (3),
// the cancel cause on the userspace path (4), listening sockets (5) and
// TCP urgent data (6).
//
// Every wait is bounded: a copy that does not end in time is reported,
// then ended by cancelling it or by closing or draining its descriptors,
// so that the engines' Close, fdtest and goleak (TestMain) still see a
// clean end. Most tests start all their copies at once and then report
// each in a subtest of its own (see check), so that their time limits
// overlap: subtests with t.Parallel would run only GOMAXPROCS at a time.

// copyRun is a copy running in a goroutine of its own.
type copyRun struct {
	done chan struct{}
	n    int64
	err  error
	end  time.Time // when the copy returned
}

var copyModes = []struct {
	name  string
	async bool
}{{"Copy", false}, {"CopyAsync", true}}

// startCopy runs e.Copy(dst, src) (async false) or e.CopyAsync(ctx, dst,
// src) (async true) from another goroutine. ctx only reaches CopyAsync.
func startCopy(e *Engine, ctx context.Context, async bool, dst io.Writer, src io.Reader) *copyRun {
	r := &copyRun{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if async {
			r.n, r.err = e.CopyAsync(ctx, dst, src).Wait()
		} else {
			r.n, r.err = e.Copy(dst, src)
		}
		r.end = time.Now()
	}()
	return r
}

// recvBy receives from ch, waiting until deadline at most. ok is false if
// nothing came by then.
func recvBy[T any](ch <-chan T, deadline time.Time) (v T, ok bool) {
	select {
	case v = <-ch:
		return v, true
	default:
	}
	d := time.Until(deadline)
	if d <= 0 {
		return v, false
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v = <-ch:
		return v, true
	case <-timer.C:
		return v, false
	}
}

// endedBy reports whether the copy ended by deadline, waiting until then
// at most.
func (r *copyRun) endedBy(deadline time.Time) bool {
	if _, ok := recvBy(r.done, deadline); !ok {
		return false
	}
	return !r.end.After(deadline)
}

// settle makes sure the copy has ended: if it still runs, it calls
// unblock, which must end it (cancel it, close or drain its descriptors),
// and waits. A copy still running 10s later fails the test at once.
func (r *copyRun) settle(t *testing.T, what string, unblock func()) {
	t.Helper()
	select {
	case <-r.done:
		return
	default:
	}
	if unblock != nil {
		unblock()
	}
	if _, ok := recvBy(r.done, time.Now().Add(10*time.Second)); !ok {
		t.Fatalf("%s: the copy still runs 10s after it was unblocked", what)
	}
}

// check is one case of a test whose copies were all started at once,
// reported in a subtest of its own.
type check struct {
	name string
	fn   func(t *testing.T)
}

func runChecks(t *testing.T, checks []check) {
	for _, c := range checks {
		t.Run(c.name, c.fn)
	}
}

// feedQuietly writes data to w from a goroutine, then closes w. A write
// that fails (the test closed the other end to end a stalled copy) ends
// it quietly. When the test ends, w is closed, which ends a write still
// blocked, and the goroutine is waited for.
func feedQuietly(t *testing.T, w io.WriteCloser, data []byte) {
	done := fdtest.WriteAndClose(w, data)
	t.Cleanup(func() {
		w.Close()
		<-done
	})
}

// smallBuffers sets the kernel buffers of TCP sockets to size bytes (the
// kernel doubles it), so that a peer that does not read stalls the writer
// soon. Below 32 KiB loopback TCP itself crawls: 8 MiB through two
// io.Copy hops over 8 KiB buffers took 54s here, 35ms over 64 KiB ones.
func smallBuffers(t *testing.T, size int, conns ...*net.TCPConn) {
	for _, c := range conns {
		if err := c.SetReadBuffer(size); err != nil {
			t.Fatal(err)
		}
		if err := c.SetWriteBuffer(size); err != nil {
			t.Fatal(err)
		}
	}
}

// quietSource returns the copy's end of a source of kind "tcp" or "unix"
// (a socket whose peer writes data and closes) or "file" (a regular file
// holding data, evicted from the page cache). It is closed when the test
// ends.
func quietSource(t *testing.T, kind string, data []byte) io.Reader {
	switch kind {
	case "tcp":
		a, b := tcpPair(t)
		t.Cleanup(func() { a.Close() })
		feedQuietly(t, b, data)
		return a
	case "unix":
		a, b := unixPair(t)
		t.Cleanup(func() { a.Close() })
		feedQuietly(t, b, data)
		return a
	case "file":
		src := fileSource(t, data)
		t.Cleanup(src.close)
		return src.r
	}
	t.Fatalf("unknown source kind %q", kind)
	return nil
}

// stallPool starts n tcp -> tcp CopyAsync whose destinations are never
// read, with small socket buffers and megabytes queued at their sources:
// each one fills an intermediate pipe it cannot drain. It returns once the
// pool has had maxPipes pipes for a while. The copies are cancelled and
// their sockets closed when the test ends.
func stallPool(t *testing.T, e *Engine, n, maxPipes int) {
	ctx, cancel := context.WithCancel(context.Background())
	runs := make([]*copyRun, n)
	for i := range runs {
		a, b := tcpPair(t) // source a, fed through b
		c, d := tcpPair(t) // destination c; d is never read
		smallBuffers(t, 8<<10, c, d)
		t.Cleanup(func() { a.Close(); c.Close(); d.Close() })
		feedQuietly(t, b, fdtest.Random(4<<20))
		runs[i] = startCopy(e, ctx, true, c, a)
	}
	t.Cleanup(func() {
		cancel()
		for _, r := range runs {
			r.settle(t, "stalled copy, cancelled", nil)
		}
	})
	deadline := time.Now().Add(3 * time.Second)
	for e.Stats().Pipes < maxPipes && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // let the copies fill their pipes and stall
	if st := e.Stats(); st.Pipes < maxPipes {
		t.Logf("only %d of %d pipes in use by the stalled copies: %+v", st.Pipes, maxPipes, st)
	}
}

// TestFaultPoolExhaustion (defect 1): copies stalled on destinations that
// do not read hold every pipe of a bounded pool. A copy that needs an
// intermediate pipe must then not wait for one but go through a userspace
// buffer, and Stats.PoolExhausted counts those rounds. Waiting makes
// healthy copies last as long as the stalled ones, and deadlocks copies
// chained through sockets on a one-pipe pool (the first hop holds the pipe
// while it waits for the second hop, which waits for the pipe).
func TestFaultPoolExhaustion(t *testing.T) {
	fdtest.Check(t)
	var checks []check
	for _, ec := range engineCases(t) {
		checks = append(checks, startExhausted(t, ec)...)
		checks = append(checks, startChain(t, ec))
	}
	runChecks(t, checks)
}

// startExhausted pins every pipe of a two-pipe pool with stalled copies,
// then starts healthy copies of 4 MiB, which must complete within 4s with
// every byte, and checks that the engine counted the fallback.
func startExhausted(t *testing.T, ec engineCase) []check {
	const maxPipes = 2
	e := newTestEngine(t, append([]Option{WithMaxPipes(maxPipes)}, ec.opts...)...)
	stallPool(t, e, maxPipes+1, maxPipes)

	// Their sources have data and their destinations read. file -> tcp
	// is sent with sendfile(2) on both engines (on the ring engine its
	// uncached chunks are read in by the ring first, into a buffer of
	// its own, not a pool pipe).
	healthy := []struct {
		name, src string
		dst       sinkKind
	}{
		{"tcp->tcp", "tcp", sinkKinds[3]},
		{"unix->unix", "unix", sinkKinds[4]},
		{"unix->tcp", "unix", sinkKinds[3]},
		{"file->tcp", "file", sinkKinds[3]},
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	const limit = 4 * time.Second
	deadline := time.Now().Add(limit)
	var checks []check
	for i, h := range healthy {
		data := fdtest.Random(4<<20 + i)
		src := quietSource(t, h.src, data)
		dst := h.dst.make(t)
		run := startCopy(e, ctx, true, dst.w, src)
		checks = append(checks, check{ec.name + "/exhausted/" + h.name, func(t *testing.T) {
			if !run.endedBy(deadline) {
				t.Errorf("4 MiB %s with every pooled pipe held: not done within %v; stats %+v", h.name, limit, e.Stats())
				run.settle(t, h.name, cancel)
				dst.finish()
				t.Logf("cancelled: (%d, %v)", run.n, run.err)
				return
			}
			got, sum := dst.finish()
			if run.err != nil || run.n != int64(len(data)) {
				t.Fatalf("copy = (%d, %v), want (%d, nil)", run.n, run.err, len(data))
			}
			if got != int64(len(data)) || sum != sha256.Sum256(data) {
				t.Fatalf("destination got %d bytes (hash match %v), want the %d copied", got, sum == sha256.Sum256(data), len(data))
			}
		}})
	}
	return append(checks, check{ec.name + "/exhausted/stats", func(t *testing.T) {
		if st := e.Stats(); poolExhausted(st) == 0 {
			t.Errorf("Stats.PoolExhausted = 0 after copies ran with the pool exhausted: %+v", st)
		}
	}})
}

// startChain runs two copies chained through TCP sockets on a one-pipe
// pool, 8 MiB fed in at one end, and checks that they come out at the
// other within 5s:
//
//	feed -> s0a => s0b -hop1-> s1a => s1b -hop2-> s2a => s2b -> reader
//
// s1's buffers are small (64 KiB), s0's are not: hop1 fills the pipe with
// up to its size (1 MiB) from s0b, more than s1a takes, and holds it
// while it waits for room in s1a, which only hop2 makes, and hop2 needs
// the pipe.
func startChain(t *testing.T, ec engineCase) check {
	e := newTestEngine(t, append([]Option{WithMaxPipes(1)}, ec.opts...)...)
	s0a, s0b := tcpPair(t)
	s1a, s1b := tcpPair(t)
	s2a, s2b := tcpPair(t)
	conns := []*net.TCPConn{s0a, s0b, s1a, s1b, s2a, s2b}
	smallBuffers(t, 64<<10, s1a, s1b)
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	t.Cleanup(closeAll)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	unblock := func() { cancel(); closeAll() }

	data := fdtest.Random(8 << 20)
	hop1 := startCopy(e, ctx, true, s1a, s0b)
	hop2 := startCopy(e, ctx, true, s2a, s1b)
	type result struct {
		n   int64
		sum [32]byte
		err error
	}
	read := make(chan result, 1)
	go func() {
		h := sha256.New()
		var r result
		r.n, r.err = io.Copy(h, s2b)
		copy(r.sum[:], h.Sum(nil))
		read <- r
	}()
	forwarded := make(chan struct{}) // EOF passed down the chain
	go func() {
		defer close(forwarded)
		<-hop1.done
		s1a.CloseWrite()
		<-hop2.done
		s2a.CloseWrite()
	}()
	feedQuietly(t, s0a, data) // and closes s0a: s0b reads EOF
	const limit = 5 * time.Second
	deadline := time.Now().Add(limit)

	return check{ec.name + "/chain", func(t *testing.T) {
		r, ok := recvBy(read, deadline)
		if !ok {
			t.Errorf("8 MiB through two copies chained over TCP on a one-pipe pool: not through within %v; stats %+v", limit, e.Stats())
			unblock()
			r = <-read
		}
		hop1.settle(t, "first hop", unblock)
		hop2.settle(t, "second hop", unblock)
		<-forwarded
		if !ok {
			t.Logf("cancelled: hops (%d, %v), (%d, %v)", hop1.n, hop1.err, hop2.n, hop2.err)
			return
		}
		for i, hop := range []*copyRun{hop1, hop2} {
			if hop.err != nil || hop.n != int64(len(data)) {
				t.Errorf("hop %d = (%d, %v), want (%d, nil)", i+1, hop.n, hop.err, len(data))
			}
		}
		if r.err != nil || r.n != int64(len(data)) || r.sum != sha256.Sum256(data) {
			t.Errorf("the reader got %d bytes (hash match %v, error %v), want %d", r.n, r.sum == sha256.Sum256(data), r.err, len(data))
		}
	}}
}

// blockingSocket returns a connected stream socket of kind "tcp" or
// "unix" in blocking mode, as an *os.File the netpoller does not watch
// (os.NewFile of a descriptor without O_NONBLOCK), and its peer, an
// ordinary net.Conn. buf > 0 makes the socket's send buffer (and a TCP
// peer's receive buffer) that small, so that a peer that does not read
// stalls writes soon. Both are closed when the test ends.
func blockingSocket(t *testing.T, kind string, buf int) (*os.File, net.Conn) {
	t.Helper()
	var fd int
	var peer net.Conn
	switch kind {
	case "tcp":
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		if buf > 0 {
			// Accepted sockets inherit the listener's receive buffer,
			// and advertise a window that fits it from the start.
			rc, err := ln.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			rc.Control(func(lfd uintptr) { err = unix.SetsockoptInt(int(lfd), unix.SOL_SOCKET, unix.SO_RCVBUF, buf) })
			if err != nil {
				t.Fatal(err)
			}
		}
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if buf > 0 {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, buf); err != nil {
				unix.Close(fd)
				t.Fatal(err)
			}
		}
		addr := ln.Addr().(*net.TCPAddr)
		sa := &unix.SockaddrInet4{Port: addr.Port}
		copy(sa.Addr[:], addr.IP.To4())
		if err := unix.Connect(fd, sa); err != nil {
			unix.Close(fd)
			t.Fatal(err)
		}
		if peer, err = ln.AcceptTCP(); err != nil {
			unix.Close(fd)
			t.Fatal(err)
		}
	case "unix":
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fd = fds[0]
		if buf > 0 {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, buf); err != nil {
				t.Fatal(err)
			}
		}
		pf := os.NewFile(uintptr(fds[1]), "socketpair")
		peer, err = net.FileConn(pf) // a non-blocking duplicate
		pf.Close()
		if err != nil {
			unix.Close(fd)
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown socket kind %q", kind)
	}
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK != 0 {
		t.Fatalf("socket flags %#x, %v: want blocking mode", fl, err)
	}
	f := os.NewFile(uintptr(fd), kind+" socket (blocking)")
	t.Cleanup(func() { f.Close(); peer.Close() })
	return f, peer
}

// closeResult is what an Engine.Close run by stopCopy returned, and when.
type closeResult struct {
	err error
	at  time.Time
}

// stopCopy stops the copies of e the way how says: "cancel" calls cancel,
// "Close" closes e from another goroutine. It returns the error the
// stopped copy must wrap and, for "Close", a channel that gets Close's
// result.
func stopCopy(e *Engine, how string, cancel func()) (closed <-chan closeResult, want error) {
	if how == "cancel" {
		cancel()
		return nil, context.Canceled
	}
	ch := make(chan closeResult, 1)
	go func() {
		err := e.Close()
		ch <- closeResult{err, time.Now()}
	}()
	return ch, ErrClosed
}

// TestFaultBlockingFD (defect 2): a socket in blocking mode (an
// os.NewFile of a descriptor without O_NONBLOCK: no netpoller, no
// deadlines) blocks splice(2) and sendfile(2) in the kernel, where
// neither a cancel nor Engine.Close reaches them. A copy reading a
// blocking socket whose peer is idle, or writing to one whose peer does
// not read, must still end within 1s (the goal is 200ms) of a cancel or a
// Close (which must return by then), with an error wrapping
// context.Canceled or ErrClosed, and with the bytes it reports being
// exactly those the peer can then read.
//
// On this kernel (6.18) a TCP splice blocks despite SPLICE_F_NONBLOCK when
// the socket is in blocking mode (tcp_splice_read goes by the file's
// O_NONBLOCK), where a unix socket's splice honours SPLICE_F_NONBLOCK;
// sendfile(2) to either blocks until it has sent its whole count.
func TestFaultBlockingFD(t *testing.T) {
	fdtest.Check(t)
	const limit = time.Second
	data := fdtest.Random(8 << 20)
	type blockingCase struct {
		name, how string
		e         *Engine
		cancel    context.CancelFunc
		run       *copyRun
		unblock   func()           // ends a copy stuck in the kernel
		cleanup   func()           // after unblock, once the copy ended
		check     func(*testing.T) // once the copy ended in time
	}
	var cases []*blockingCase
	for _, ec := range engineCases(t) {
		for _, how := range []string{"cancel", "Close"} {
			for _, kind := range []string{"tcp", "unix"} {
				// A copy from a blocking socket whose peer is idle, to a pipe.
				c := &blockingCase{name: fmt.Sprintf("%s/%s->pipe/%s", ec.name, kind, how), how: how}
				c.e = newTestEngine(t, ec.opts...)
				src, peer := blockingSocket(t, kind, 0)
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { r.Close(); w.Close() })
				var ctx context.Context
				ctx, c.cancel = context.WithCancel(context.Background())
				t.Cleanup(c.cancel)
				c.run = startCopy(c.e, ctx, true, w, src)
				c.unblock = func() { peer.Close() } // EOF for the read blocked in the kernel
				c.cleanup = func() {}
				c.check = func(*testing.T) {}
				cases = append(cases, c)

				// A copy from a file to a blocking socket whose peer
				// does not read (until the copy has ended).
				c = &blockingCase{name: fmt.Sprintf("%s/file->%s/%s", ec.name, kind, how), how: how}
				c.e = newTestEngine(t, ec.opts...)
				fsrc := fileSource(t, data)
				t.Cleanup(fsrc.close)
				dst, dpeer := blockingSocket(t, kind, 64<<10)
				ctx, c.cancel = context.WithCancel(context.Background())
				t.Cleanup(c.cancel)
				c.run = startCopy(c.e, ctx, true, dst, fsrc.r)
				drained := make(chan struct{})
				c.unblock = func() {
					go func() {
						defer close(drained)
						io.Copy(io.Discard, dpeer)
					}()
				}
				c.cleanup = func() {
					dst.Close() // the drain reads EOF
					<-drained
				}
				c.check = func(t *testing.T) {
					checkPeerGot(t, dst, dpeer, data, c.run.n, fsrc.r.(*os.File))
				}
				cases = append(cases, c)
			}
		}
	}
	time.Sleep(100 * time.Millisecond) // the copies block: on the idle peers, on the full sockets
	start := time.Now()
	deadline := start.Add(limit)
	var checks []check
	for _, c := range cases {
		closed, want := stopCopy(c.e, c.how, c.cancel)
		checks = append(checks, check{c.name, func(t *testing.T) {
			ended := c.run.endedBy(deadline)
			if !ended {
				t.Errorf("the copy did not end within %v of the %s", limit, c.how)
				c.run.settle(t, c.name, c.unblock)
			}
			if closed != nil {
				res, ok := recvBy(closed, time.Now().Add(10*time.Second))
				switch {
				case !ok:
					t.Fatal("Close did not return although its copy ended")
				case res.err != nil:
					t.Errorf("Close: %v", res.err)
				case ended && res.at.After(deadline):
					t.Errorf("Close returned %v after it was called, want within %v", res.at.Sub(start), limit)
				}
			}
			if !ended {
				c.cleanup()
				t.Logf("unblocked: (%d, %v)", c.run.n, c.run.err)
				return
			}
			if !errors.Is(c.run.err, want) {
				t.Errorf("copy = (%d, %v), want an error wrapping %v", c.run.n, c.run.err, want)
			}
			c.check(t)
			t.Logf("the %s ended the copy in %v, after %d bytes", c.how, c.run.end.Sub(start), c.run.n)
		}})
	}
	runChecks(t, checks)
}

// checkPeerGot closes dst, a socket that a copy from the file src wrote n
// bytes to, and checks that dst's peer then reads exactly n bytes, the
// first n of data, and that src's offset is right after them.
func checkPeerGot(t *testing.T, dst *os.File, peer net.Conn, data []byte, n int64, src *os.File) {
	t.Helper()
	dst.Close()
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(peer)
	if err != nil {
		t.Fatalf("reading the peer after the copy: %v (after %d bytes)", err, len(got))
	}
	if int64(len(got)) != n {
		t.Errorf("the copy reported %d bytes, the peer got %d", n, len(got))
	}
	if !bytes.Equal(got, data[:min(len(got), len(data))]) {
		t.Errorf("the %d bytes the peer got are not the file's first ones", len(got))
	}
	if off, _ := src.Seek(0, io.SeekCurrent); off != n {
		t.Errorf("source offset %d after a copy of %d bytes", off, n)
	}
}

// TestFaultClosedFile (defect 3): closing an *os.File source or
// destination while a copy waits on it must end the copy with an error
// for which errors.Is(err, os.ErrClosed) holds, as io.Copy's does (checked
// on this kernel: "read |0: file already closed", "write |1: file already
// closed"), not with the raw "use of closed file" of its RawConn.
func TestFaultClosedFile(t *testing.T) {
	fdtest.Check(t)
	type closedCase struct {
		name    string
		run     *copyRun
		close   func() // the file closed 50ms into the copy
		unblock func()
	}
	var cases []closedCase
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, m := range copyModes {
			for _, dk := range []string{"file", "tcp"} {
				r, w, err := os.Pipe() // nothing is written to w
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { r.Close(); w.Close() })
				var dst io.Writer
				switch dk {
				case "file":
					f, err := os.Create(filepath.Join(t.TempDir(), "dst"))
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { f.Close() })
					dst = f
				case "tcp":
					a, b := tcpPair(t)
					t.Cleanup(func() { a.Close(); b.Close() })
					dst = a
				}
				ctx, cancel := context.WithCancel(context.Background())
				t.Cleanup(cancel)
				cases = append(cases, closedCase{
					name:    fmt.Sprintf("%s/source-closed/pipe->%s/%s", ec.name, dk, m.name),
					run:     startCopy(e, ctx, m.async, dst, r),
					close:   func() { r.Close() },
					unblock: func() { cancel(); w.Close() },
				})
			}
			for _, sk := range []string{"file", "pipe"} {
				var src io.Reader
				switch sk {
				case "file":
					src = quietSource(t, "file", fdtest.Random(4<<20))
				case "pipe":
					r1, w1, err := os.Pipe()
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { r1.Close() })
					feedQuietly(t, w1, fdtest.Random(1<<20))
					src = r1
				}
				r2, w2, err := os.Pipe() // r2 is not read: w2 fills
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { r2.Close(); w2.Close() })
				ctx, cancel := context.WithCancel(context.Background())
				t.Cleanup(cancel)
				cases = append(cases, closedCase{
					name:    fmt.Sprintf("%s/destination-closed/%s->pipe/%s", ec.name, sk, m.name),
					run:     startCopy(e, ctx, m.async, w2, src),
					close:   func() { w2.Close() },
					unblock: func() { cancel(); r2.Close() },
				})
			}
		}
	}
	time.Sleep(50 * time.Millisecond)
	for _, c := range cases {
		c.close()
	}
	deadline := time.Now().Add(5 * time.Second)
	var checks []check
	for _, c := range cases {
		checks = append(checks, check{c.name, func(t *testing.T) {
			if !c.run.endedBy(deadline) {
				t.Errorf("closing the file did not end the copy within 5s")
				c.run.settle(t, c.name, c.unblock)
				return
			}
			if !errors.Is(c.run.err, os.ErrClosed) {
				t.Errorf("copy = (%d, %v), want an error matching os.ErrClosed", c.run.n, c.run.err)
			}
		}})
	}
	runChecks(t, checks)
}

// tickReader is a source without a descriptor that never ends: a byte
// every millisecond.
type tickReader struct{}

func (tickReader) Read(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = 'x'
	return 1, nil
}

// TestFaultCancelCause (defect 4): a copy on the userspace path (a
// destination or source without a descriptor) cancelled with a cause must
// fail with an error matching both context.Canceled and the cause, as the
// kernel paths' errors do; it matched only the cause when the copy waited
// on a descriptor, and only context.Canceled between reads.
func TestFaultCancelCause(t *testing.T) {
	fdtest.Check(t)
	errShutdown := errors.New("server shutting down")
	cases := []struct {
		name string
		make func(t *testing.T) (io.Writer, io.Reader)
	}{
		{"idle-tcp->buffer", func(t *testing.T) (io.Writer, io.Reader) {
			a, b := tcpPair(t)
			t.Cleanup(func() { a.Close(); b.Close() })
			return &bytes.Buffer{}, a
		}},
		{"idle-unix->buffer", func(t *testing.T) (io.Writer, io.Reader) {
			a, b := unixPair(t)
			t.Cleanup(func() { a.Close(); b.Close() })
			return &bytes.Buffer{}, a
		}},
		{"idle-pipe->buffer", func(t *testing.T) (io.Writer, io.Reader) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close(); w.Close() })
			return &bytes.Buffer{}, r
		}},
		{"busy-reader->discard", func(t *testing.T) (io.Writer, io.Reader) {
			return io.Discard, tickReader{}
		}},
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, c := range cases {
			t.Run(ec.name+"/"+c.name, func(t *testing.T) {
				dst, src := c.make(t)
				ctx, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				f := e.CopyAsync(ctx, dst, src)
				time.Sleep(50 * time.Millisecond)
				cancel(errShutdown)
				select {
				case <-f.Done():
				case <-time.After(5 * time.Second):
					t.Fatal("the cancelled copy did not end within 5s") // the cleanups close src
				}
				n, err := f.Wait()
				if !errors.Is(err, context.Canceled) || !errors.Is(err, errShutdown) {
					t.Errorf("copy = (%d, %v), want an error matching context.Canceled and the cause (Canceled %v, cause %v)",
						n, err, errors.Is(err, context.Canceled), errors.Is(err, errShutdown))
				}
			})
		}
	}
}

// listenerFile returns the *os.File of a listening TCP socket nobody
// connects to: non-blocking and in the netpoller (its Fd method, which
// would make it blocking, is never called).
func listenerFile(t *testing.T) *os.File {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.File()
	ln.Close() // the duplicate keeps the socket listening
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestFaultListener (defect 5): a listening socket is a SOCK_STREAM socket
// but has no byte stream: read(2) and splice(2) from it fail with
// ENOTCONN, write(2), sendfile(2) and splice(2) to it with EPIPE, and
// poll(2) reports it neither readable (until a connection is pending) nor
// writable. A copy from or to one must fail within 1s with the error
// io.Copy gives, never wait for readiness. Checked once on this kernel
// (6.18): io.Copy(pipeW, ln) = 0, "read tcp:127.0.0.1:port->: transport
// endpoint is not connected" (an *fs.PathError matching ENOTCONN), and
// io.Copy(ln, pipeR) = 0, "write tcp:127.0.0.1:port->: broken pipe"
// (matching EPIPE).
func TestFaultListener(t *testing.T) {
	fdtest.Check(t)
	const limit = time.Second
	sinks := []struct {
		name string
		make func() io.Writer
	}{
		{"pipe", func() io.Writer {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close(); w.Close() })
			return w
		}},
		{"tcp", func() io.Writer {
			a, b := tcpPair(t)
			t.Cleanup(func() { a.Close(); b.Close() })
			return a
		}},
		{"unix", func() io.Writer {
			a, b := unixPair(t)
			t.Cleanup(func() { a.Close(); b.Close() })
			return a
		}},
		{"file", func() io.Writer {
			f, err := os.Create(filepath.Join(t.TempDir(), "dst"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return f
		}},
		{"buffer", func() io.Writer { return &bytes.Buffer{} }},
	}
	sources := []struct {
		name string
		make func() io.Reader
	}{
		{"pipe", func() io.Reader {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			if _, err := w.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			w.Close()
			return r
		}},
		{"tcp", func() io.Reader { return quietSource(t, "tcp", []byte("hello")) }},
		{"unix", func() io.Reader { return quietSource(t, "unix", []byte("hello")) }},
		// Evicted from the page cache: sendfile(2) on both engines,
		// on the ring engine after the ring has read the chunk in.
		{"file", func() io.Reader { return quietSource(t, "file", fdtest.Random(4<<20)) }},
		{"reader", func() io.Reader { return onlyReader{strings.NewReader("hello")} }},
	}
	type listenerCase struct {
		name    string
		run     *copyRun
		want    error
		unblock func()
	}
	var cases []listenerCase
	start := func(e *Engine, async bool, name string, dst io.Writer, src io.Reader, ln *os.File, want error) {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		cases = append(cases, listenerCase{name, startCopy(e, ctx, async, dst, src), want, func() { cancel(); ln.Close() }})
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, m := range copyModes {
			for _, sk := range sinks {
				ln := listenerFile(t)
				start(e, m.async, fmt.Sprintf("%s/listener->%s/%s", ec.name, sk.name, m.name), sk.make(), ln, ln, syscall.ENOTCONN)
			}
			for _, sk := range sources {
				ln := listenerFile(t)
				start(e, m.async, fmt.Sprintf("%s/%s->listener/%s", ec.name, sk.name, m.name), ln, sk.make(), ln, syscall.EPIPE)
			}
		}
	}
	deadline := time.Now().Add(limit)
	var checks []check
	for _, c := range cases {
		checks = append(checks, check{c.name, func(t *testing.T) {
			if !c.run.endedBy(deadline) {
				t.Errorf("the copy did not fail within %v", limit)
				c.run.settle(t, c.name, c.unblock)
				t.Logf("unblocked: (%d, %v)", c.run.n, c.run.err)
				return
			}
			if !errors.Is(c.run.err, c.want) {
				t.Errorf("copy = (%d, %v), want an error matching %v", c.run.n, c.run.err, c.want)
			}
		}})
	}
	runChecks(t, checks)
}

// sendUrgent writes "abc" to each of conns, then "!" as TCP urgent data
// (MSG_OOB), then "def", each in a segment of its own (Go sets
// TCP_NODELAY, and the pauses keep the writes apart), and shuts down their
// sending sides.
func sendUrgent(t *testing.T, conns []*net.TCPConn) {
	t.Helper()
	pause := func() { time.Sleep(20 * time.Millisecond) }
	for _, b := range conns {
		if _, err := b.Write([]byte("abc")); err != nil {
			t.Fatal(err)
		}
	}
	pause()
	for _, b := range conns {
		fdtest.SendOOB(t, b)
	}
	pause()
	for _, b := range conns {
		if _, err := b.Write([]byte("def")); err != nil {
			t.Fatal(err)
		}
	}
	pause()
	for _, b := range conns {
		if err := b.CloseWrite(); err != nil {
			t.Fatal(err)
		}
	}
}

// captureSink returns a destination of kind "pipe", "tcp" or "file" and a
// finish that closes the copy's end and returns everything it received.
func captureSink(t *testing.T, kind string) (io.Writer, func() []byte) {
	switch kind {
	case "file":
		path := filepath.Join(t.TempDir(), "dst")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f, func() []byte {
			f.Close()
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	case "pipe", "tcp":
		var r io.ReadCloser
		var w io.WriteCloser
		if kind == "pipe" {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			r, w = pr, pw
		} else {
			a, b := tcpPair(t)
			r, w = b, a
		}
		got := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(r)
			got <- b
		}()
		t.Cleanup(func() { w.Close(); r.Close() })
		return w, func() []byte {
			w.Close()
			return <-got
		}
	}
	t.Fatalf("unknown sink kind %q", kind)
	return nil, nil
}

// TestFaultUrgentData (defect 6): TCP urgent data (MSG_OOB) is not inline
// by default (SO_OOBINLINE off): read(2) stops at the urgent mark and the
// next read skips the urgent byte, so a read(2) loop over "abc", urgent
// "!", "def" gets "abcdef" (6 bytes), and so must a copy, whatever its
// destination. splice(2) from TCP stops at the mark too but never skips
// it: checked on this kernel (6.18), at the mark (SIOCATMARK 1) it returns
// 0, which reads as EOF, once the peer has shut down, and EAGAIN before,
// with the socket readable, while a read(2) then returns "def". Beware
// that io.Copy itself has this defect wherever Go splices: io.Copy into
// an *os.File (pipe or file) or a *net.TCPConn returns (3, nil) with
// "abc" here; only its read(2) path (a destination without ReadFrom, or a
// bytes.Buffer) returns "abcdef". The copy starts after all the data has
// arrived ("queued") or before the peer writes ("live").
func TestFaultUrgentData(t *testing.T) {
	fdtest.Check(t)
	const want = "abcdef"
	type urgentCase struct {
		name    string
		run     *copyRun
		finish  func() []byte
		unblock func()
	}
	var cases []*urgentCase
	var queued, live []*net.TCPConn
	var startQueued []func()
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, m := range copyModes {
			for _, dk := range []string{"pipe", "tcp", "file"} {
				for _, timing := range []string{"queued", "live"} {
					a, b := tcpPair(t)
					t.Cleanup(func() { a.Close(); b.Close() })
					dst, finish := captureSink(t, dk)
					ctx, cancel := context.WithCancel(context.Background())
					t.Cleanup(cancel)
					c := &urgentCase{
						name:    fmt.Sprintf("%s/tcp->%s/%s/%s", ec.name, dk, timing, m.name),
						finish:  finish,
						unblock: func() { cancel(); a.Close() },
					}
					cases = append(cases, c)
					start := func() { c.run = startCopy(e, ctx, m.async, dst, a) }
					if timing == "live" {
						live = append(live, b)
						start()
					} else {
						queued = append(queued, b)
						startQueued = append(startQueued, start)
					}
				}
			}
		}
	}
	// A reference stream read with read(2), to check that the kernel
	// sends and delivers the urgent byte out of band, as assumed.
	ra, rb := tcpPair(t)
	t.Cleanup(func() { ra.Close(); rb.Close() })
	sendUrgent(t, append([]*net.TCPConn{rb}, append(queued, live...)...))
	time.Sleep(20 * time.Millisecond) // the queued data has arrived
	for _, start := range startQueued {
		start()
	}
	ra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(onlyReader{ra}); err != nil || string(got) != want {
		t.Fatalf("read(2) got %q, %v; want %q: the urgent byte did not go out of band", got, err, want)
	}
	deadline := time.Now().Add(5 * time.Second)
	var checks []check
	for _, c := range cases {
		checks = append(checks, check{c.name, func(t *testing.T) {
			if !c.run.endedBy(deadline) {
				t.Errorf("the copy did not end within 5s")
				c.run.settle(t, c.name, c.unblock)
				c.finish()
				return
			}
			got := c.finish()
			if c.run.err != nil || c.run.n != int64(len(want)) || string(got) != want {
				t.Errorf("copy = (%d, %v), destination got %q; want (%d, nil) and %q", c.run.n, c.run.err, got, len(want), want)
			}
		}})
	}
	runChecks(t, checks)
}

// poolExhausted returns s.PoolExhausted: the copy rounds that went without
// a pooled pipe because none was free.
func poolExhausted(s Stats) uint64 { return s.PoolExhausted }

// TestFaultsUnprivileged runs the fault tests where quotas matter again as
// uid 65534, whose pipe quota (pipe-user-pages-soft) shrinks pipes to
// one page once it is used up.
func TestFaultsUnprivileged(t *testing.T) {
	skipUnlessRerunner(t, "the fault tests")
	runUnprivileged(t, "^TestFault(PoolExhaustion|BlockingFD|UrgentData|ClosedFile)$")
}

// TestFaultUrgentIntoStalledBlockingPipe: a TCP source with urgent data
// copied into a pipe in blocking mode whose reader has stopped. The
// urgent mark sends a round through the userspace buffer, and its
// write(2) of up to a buffer's worth into the nearly full pipe waited in
// the kernel, where neither the context nor Close reach: the copy must
// end when its context does, having delivered what the pipe took.
func TestFaultUrgentIntoStalledBlockingPipe(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		t.Run(ec.name, func(t *testing.T) {
			e := newTestEngine(t, ec.opts...)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			fut, r, w := urgentIntoStalledPipe(t, e, ctx)
			cancel()
			select {
			case <-fut.Done():
			case <-time.After(10 * time.Second):
				r.Close() // the blocked write(2) fails (EPIPE): the copy returns
				<-fut.Done()
				t.Fatal("the copy did not end with its context: blocked in write(2)")
			}
			n, err := fut.Wait()
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Wait = (%d, %v), want context.Canceled", n, err)
			}
			w.Close()
			got, rerr := io.ReadAll(r)
			if rerr != nil || int64(len(got)) != n {
				t.Errorf("the pipe holds %d bytes (%v), the copy reports %d", len(got), rerr, n)
			}
		})
	}
}

// urgentIntoStalledPipe starts a copy on ctx from a TCP connection into
// the write end w of a pipe in blocking mode whose reader r reads
// nothing, and returns once the copy, past the connection's urgent mark,
// waits for room in the pipe in a round through the userspace buffer.
func urgentIntoStalledPipe(t *testing.T, e *Engine, ctx context.Context) (fut *Future, r, w *os.File) {
	t.Helper()
	a, b := tcpPair(t)
	t.Cleanup(func() { a.Close(); b.Close() })
	r, w = blockingPipe(t)
	fut = e.CopyAsync(ctx, w, a)
	// 15 segments, each spliced alone into a slot of its own: the pipe
	// (16 slots) has room for one page more.
	for range 15 {
		if _, err := b.Write(bytes.Repeat([]byte("x"), 100)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	fdtest.SendOOB(t, b)
	time.Sleep(20 * time.Millisecond)
	if _, err := b.Write(bytes.Repeat([]byte("y"), 128<<10)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the copy meets the full pipe
	return fut, r, w
}
