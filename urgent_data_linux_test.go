//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Adversarial tests, through the public API, of copies from a stream
// socket at urgent marks (MSG_OOB): a splice there answers EAGAIN (or 0)
// although input follows, and the copy splices again once, then crosses
// the mark with a buffer round.

// adv33uSink is a destination whose other end is read as the copy
// writes: seen says how many bytes arrived so far.
type adv33uSink struct {
	w      io.Writer
	mu     sync.Mutex
	got    []byte
	done   chan struct{}
	closeW func()
}

func (s *adv33uSink) seen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// finish closes the copy's end (unless a relay shut it already) and
// returns what arrived.
func (s *adv33uSink) finish() []byte {
	s.closeW()
	<-s.done
	return s.got
}

// newAdv33uSink returns a sink of kind pipe, tcp or unix.
func newAdv33uSink(t *testing.T, kind string) *adv33uSink {
	t.Helper()
	var r, w io.Closer
	s := &adv33uSink{done: make(chan struct{})}
	switch kind {
	case "pipe":
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		r, w, s.w, s.closeW = pr, pw, pw, func() { pw.Close() }
	case "tcp":
		a, b := tcpPair(t)
		r, w, s.w, s.closeW = b, a, a, func() { a.CloseWrite() }
	case "unix":
		a, b := unixPair(t)
		r, w, s.w, s.closeW = b, a, a, func() { a.CloseWrite() }
	default:
		t.Fatalf("sink kind %q", kind)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	rd := r.(io.Reader)
	go func() {
		defer close(s.done)
		b := make([]byte, 64<<10)
		for {
			n, err := rd.Read(b)
			s.mu.Lock()
			s.got = append(s.got, b[:n]...)
			s.mu.Unlock()
			if err != nil {
				if c, ok := r.(interface{ CloseWrite() error }); ok {
					c.CloseWrite() // a relay's other direction ends
				}
				return
			}
		}
	}()
	return s
}

// adv33uSource returns the copy's end of a stream connection of network
// (tcp, unix), with SO_OOBINLINE if inline, in blocking mode (an
// *os.File the netpoller does not watch) if blocking, and its peer.
func adv33uSource(t *testing.T, network string, inline, blocking bool) (io.ReadWriter, net.Conn) {
	t.Helper()
	var a, b net.Conn
	if network == "tcp" {
		a, b = tcpPair(t)
	} else {
		a, b = unixPair(t)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	rc, err := a.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	dup := -1
	rc.Control(func(fd uintptr) {
		if inline {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_OOBINLINE, 1); serr != nil {
				return
			}
		}
		if blocking {
			if dup, serr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0); serr == nil {
				serr = unix.SetNonblock(dup, false)
			}
		}
	})
	if serr != nil {
		t.Fatal(serr)
	}
	if !blocking {
		return a, b
	}
	a.Close()
	f := os.NewFile(uintptr(dup), "blocking "+network)
	t.Cleanup(func() { f.Close() })
	return f, b
}

// TestAdv33uUrgentPublic copies, through an Engine's Copy, CopyContext,
// CopyAsync and Relay (what the package's functions run on
// DefaultEngine), from a TCP or unix stream socket whose peer sends urgent
// bytes (MSG_OOB) at the start, in the middle and at the end of the
// stream, each once the destination has every byte before it (the copy
// sits at the mark), and pauses once the copy has nothing left but the
// last urgent byte: the copy must deliver what io.Copy's read(2) loop
// does (the data, the urgent bytes only where SO_OOBINLINE), count it,
// sit parked without burning CPU at the pause, and end at EOF. An
// io.LimitedReader that ends the copy at a mark, or one byte past it, and
// a RateLimit pacing it are read through too.
func TestAdv33uUrgentPublic(t *testing.T) {
	fdtest.Check(t)
	{
		a, b := unixPair(t)
		err := fdtest.SendOOBByte(b, '!')
		a.Close()
		b.Close()
		if err != nil {
			t.Logf("unix stream sockets skipped: MSG_OOB: %v", err)
		}
	}
	type entry struct {
		name  string
		limit int64 // an io.LimitedReader's N (0: none)
		paced bool
		run   func(e *Engine, ctx context.Context, dst, src io.ReadWriter) (int64, error)
	}
	const before = adv33uBefore
	entries := []entry{
		{"Copy", 0, false, func(e *Engine, _ context.Context, dst, src io.ReadWriter) (int64, error) { return e.Copy(dst, src) }},
		{"CopyContext", 0, false, func(e *Engine, ctx context.Context, dst, src io.ReadWriter) (int64, error) {
			return e.CopyContext(ctx, dst, src)
		}},
		{"CopyAsync", 0, false, func(e *Engine, ctx context.Context, dst, src io.ReadWriter) (int64, error) {
			return e.CopyAsync(ctx, dst, src).Wait()
		}},
		{"Relay", 0, false, func(e *Engine, ctx context.Context, dst, src io.ReadWriter) (int64, error) {
			n, _, err := e.Relay(ctx, src, dst)
			return n, err
		}},
		{"LimitAtMark", before, false, func(e *Engine, _ context.Context, dst, src io.ReadWriter) (int64, error) {
			return e.Copy(dst, &io.LimitedReader{R: src, N: before})
		}},
		{"LimitPastMark", before + 1, false, func(e *Engine, _ context.Context, dst, src io.ReadWriter) (int64, error) {
			return e.Copy(dst, &io.LimitedReader{R: src, N: before + 1})
		}},
		{"RateLimit", 0, true, func(e *Engine, ctx context.Context, dst, src io.ReadWriter) (int64, error) {
			return e.CopyContext(ctx, dst, RateLimit(src, NewLimiter(4<<20, 0)))
		}},
	}
	for _, network := range []string{"tcp", "unix"} {
		for _, sink := range []string{"pipe", "tcp", "unix"} {
			for _, inline := range []bool{false, true} {
				for _, blocking := range []bool{false, true} {
					for _, en := range entries {
						if en.name == "Relay" && (sink == "pipe" || blocking) {
							continue // a relay's ends are connections
						}
						name := fmt.Sprintf("%s/%s->%s/inline=%v/blocking=%v", en.name, network, sink, inline, blocking)
						t.Run(name, func(t *testing.T) {
							if network == "unix" {
								a, b := unixPair(t)
								err := fdtest.SendOOBByte(b, '!')
								a.Close()
								b.Close()
								if err != nil {
									t.Skip(err)
								}
							}
							adv33uPublic(t, network, sink, inline, blocking, en.limit, en.run)
						})
					}
				}
			}
		}
	}
}

// adv33uBefore is how many bytes precede the middle mark.
const adv33uBefore = 5000

func adv33uPublic(t *testing.T, network, sinkKind string, inline, blocking bool, limit int64,
	run func(e *Engine, ctx context.Context, dst, src io.ReadWriter) (int64, error)) {
	e := newTestEngine(t)
	src, peer := adv33uSource(t, network, inline, blocking)
	sink := newAdv33uSink(t, sinkKind)
	dst := sink.w.(io.ReadWriter)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		n   int64
		err error
	)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		n, err = run(e, ctx, dst, src)
	}()
	var want []byte
	// await waits until the destination has all sent so far, or the copy
	// returned (one up to a limit).
	await := func() bool {
		for sink.seen() < len(want) {
			select {
			case <-copied:
				return false
			case <-time.After(time.Millisecond):
			}
		}
		return true
	}
	var feedErr error // the feeder's, read once fed is closed
	oob := func(b byte) {
		if await() {
			if err := fdtest.SendOOBByte(peer, b); err != nil {
				feedErr = errors.Join(feedErr, fmt.Errorf("MSG_OOB: %w", err))
			}
			if inline {
				want = append(want, b)
			}
		}
	}
	data := func(n int) {
		b := fdtest.Random(n)
		if _, err := peer.Write(b); err == nil {
			want = append(want, b...)
		}
	}
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		oob('<')
		data(adv33uBefore)
		oob('!')
		data(7000)
		oob('>')
		if await() {
			feedErr = errors.Join(feedErr, adv33uParkedCPU())
		}
		data(10)
		peer.(interface{ CloseWrite() error }).CloseWrite()
	}()
	fdtest.Within(t, 30*time.Second, func() {
		<-fed
		<-copied
	})
	if feedErr != nil {
		t.Error(feedErr)
	}
	got := sink.finish()
	if limit > 0 {
		want = want[:min(int64(len(want)), limit)]
	}
	if err != nil || n != int64(len(want)) || !bytes.Equal(got, want) {
		t.Errorf("copy = %d, %v, dst got %d bytes (%q...); want %d bytes (%q...)",
			n, err, len(got), got[:min(len(got), 24)], len(want), want[:min(len(want), 24)])
	}
}

// adv33uParkedCPU checks that a copy with nothing to move sits parked:
// over a while the process uses a small part of a CPU; it returns what
// it found otherwise.
func adv33uParkedCPU() error {
	const span = 100 * time.Millisecond
	time.Sleep(20 * time.Millisecond) // the copy reaches its wait
	if cpu, spin := fdtest.Spinning(span); spin {
		return fmt.Errorf("parked copy: the process used %v of CPU in %v", cpu, span)
	}
	return nil
}

// TestAdv9UrgentIntoStalledPipeClose is TestFaultUrgentIntoStalledBlockingPipe
// ended by a Close of the destination instead of the context: the round
// through the userspace buffer that crosses the urgent mark waited for
// room in the blocking pipe in poll(2) slices without leaving the
// destination's RawConn callback, where a Close is never seen, so the
// copy ran on until the pipe's reader read. It must end with an error
// matching os.ErrClosed, having reported the bytes the pipe took.
func TestAdv9UrgentIntoStalledPipeClose(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		t.Run(ec.name, func(t *testing.T) {
			e := newTestEngine(t, ec.opts...)
			fut, r, w := urgentIntoStalledPipe(t, e, context.Background())
			w.Close()
			select {
			case <-fut.Done():
			case <-time.After(10 * time.Second):
				r.Close() // the copy's write fails (EPIPE): it returns
				<-fut.Done()
				t.Fatal("the copy did not end with a Close of its destination")
			}
			n, err := fut.Wait()
			if !errors.Is(err, os.ErrClosed) {
				t.Errorf("Wait = (%d, %v), want an error matching os.ErrClosed", n, err)
			}
			got, rerr := io.ReadAll(r) // EOF: the copy holds w no more
			if rerr != nil || int64(len(got)) != n {
				t.Errorf("the pipe holds %d bytes (%v), the copy reports %d", len(got), rerr, n)
			}
		})
	}
}

// TestAdv24UnixUrgent copies from a unix stream socket whose peer sent
// out-of-band data (MSG_OOB, as TCP's urgent data: a read(2) stops at
// its mark and then steps over the byte, unless SO_OOBINLINE) into
// every destination kind: the copy must deliver what io.Copy's read(2)
// loop delivers, and count it.
func TestAdv24UnixUrgent(t *testing.T) {
	fdtest.Check(t)
	big := fdtest.Random(300 << 10)
	type step struct {
		data []byte
		oob  byte // sent as MSG_OOB where data is nil
	}
	cases := []struct {
		name   string
		inline bool
		steps  []step
	}{
		{"mid", false, []step{{data: []byte("abc")}, {oob: '!'}, {data: []byte("def")}}},
		{"first", false, []step{{oob: '!'}, {data: []byte("def")}}},
		{"last", false, []step{{data: []byte("abc")}, {oob: '!'}}},
		{"twice", false, []step{{data: []byte("ab")}, {oob: '1'}, {oob: '2'}, {data: []byte("cd")}}},
		{"inline", true, []step{{data: []byte("abc")}, {oob: '!'}, {data: []byte("def")}}},
		{"big", false, []step{{data: big[:150<<10]}, {oob: '!'}, {data: big[150<<10:]}}},
	}
	a, b := unixPair(t)
	err := fdtest.SendOOBByte(b, '!')
	a.Close()
	b.Close()
	if err != nil {
		// No CONFIG_AF_UNIX_OOB (Linux 5.15).
		t.Skipf("MSG_OOB on a unix stream socket: %v", err)
	}
	// source returns the copy's end of a unix stream socket whose peer
	// runs the steps and closes; all of them before it returns where
	// they fit in the socket's buffer, so that a read(2) meets each mark
	// where io.Copy's met it.
	source := func(t *testing.T, inline bool, steps []step) *net.UnixConn {
		a, b := unixPair(t)
		t.Cleanup(func() { a.Close(); b.Close() })
		if inline {
			rc, _ := a.SyscallConn()
			rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_OOBINLINE, 1) })
		}
		fed := make(chan struct{})
		size := 0
		go func() {
			defer close(fed)
			for _, s := range steps {
				var err error
				if s.data == nil {
					err = fdtest.SendOOBByte(b, s.oob)
				} else {
					_, err = b.Write(s.data)
				}
				if err != nil {
					t.Errorf("feeding: %v", err)
				}
			}
			b.Close()
		}()
		t.Cleanup(func() { <-fed })
		for _, s := range steps {
			size += len(s.data)
		}
		if size < 64<<10 {
			<-fed
		}
		return a
	}
	for _, ec := range adv24Engines(t) {
		e := newTestEngine(t, ec.opts...)
		for _, c := range cases {
			for _, sk := range advSinks {
				t.Run(fmt.Sprintf("%s/%s->%s", ec.name, c.name, sk), func(t *testing.T) {
					w, finish := advSink(t, sk)
					wantN, wantErr := io.Copy(struct{ io.Writer }{w}, struct{ io.Reader }{source(t, c.inline, c.steps)})
					want := finish()
					w, finish = advSink(t, sk)
					var n int64
					var err error
					fdtest.Within(t, 20*time.Second, func() { n, err = e.Copy(w, source(t, c.inline, c.steps)) })
					got := finish()
					if n != wantN || !sameErr(err, wantErr) || !bytes.Equal(got, want) {
						t.Errorf("Copy = (%d, %v), destination got %q; io.Copy's read(2) loop = (%d, %v), %q", n, err, trunc(got), wantN, wantErr, trunc(want))
					}
				})
			}
		}
	}
}
