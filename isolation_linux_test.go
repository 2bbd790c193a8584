//go:build !pipes_portable

package pipes

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// The isolation tests: copies whose peers are hostile (never read, read a
// byte at a time, never write, reset) run on an engine next to healthy
// copies, which must complete while the hostile ones are still blocked;
// Engine.Close must then end the hostile ones without their peers. The
// tests check order, not time: a healthy copy is done before the hostile
// peers are released. isoGuard only turns a hang into a failure, with
// every goroutine's stack.

// isoGuard bounds every wait of the isolation tests: past it the test
// fails as hung.
const isoGuard = 60 * time.Second

// isoWait waits for done, failing the test with every goroutine's stack
// if it has not happened within isoGuard.
func isoWait(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(isoGuard):
		buf := make([]byte, 1<<22)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("%s: hung (not done within %v); goroutines:\n%s", what, isoGuard, buf)
	}
}

// isoUntil polls cond until it holds, failing as hung after isoGuard.
func isoUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	done := make(chan struct{})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for !cond() {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		close(done)
	}()
	isoWait(t, done, what)
}

// isoStalled waits until f has moved at least one byte and then moved no
// more over a few polls: the copy is at its peer's mercy. It is only a
// precondition (the test still holds where the copy was slower to get
// there), never what the test asserts.
func isoStalled(t *testing.T, f *Future) {
	t.Helper()
	var last int64 = -1
	same := 0
	isoUntil(t, func() bool {
		n := f.Written()
		if n > 0 && n == last {
			same++
		} else {
			same = 0
		}
		last = n
		return same >= 4
	}, "the hostile copy's first bytes")
}

// isoOnce makes f idempotent, for releases called by the test and again
// by its cleanup.
func isoOnce(f func()) func() {
	var once sync.Once
	return func() { once.Do(f) }
}

// isoHostile is copy A: started on e, it is stuck on its peer until
// release. stall waits until it is. Where uninterruptible, Close cannot
// end it (a Read or Write with no descriptor, which no deadline reaches):
// the test releases it before Close. ends: A fails by itself (a reset),
// and is not expected to be still running when the healthy copies end.
type isoHostile struct {
	name            string
	uninterruptible bool
	ends            bool
	start           func(t *testing.T, e *Engine, env *isoEnv) (f *Future, stall func(), release func())
}

// isoEnv is what one isolation case shares: its data files and the
// Limiter to pace sources by (nil: none).
type isoEnv struct {
	big  string // path of a file of isoBig() bytes
	data []byte // its bytes
	lim  *Limiter
}

// isoBig is the size of the healthy copies' large case: 64 MiB, 8 MiB
// under the race detector, which slows every byte a userspace copy
// moves.
func isoBig() int {
	if raceEnabled {
		return 8 << 20
	}
	return 64 << 20
}

func (env *isoEnv) pace(r io.Reader) io.Reader {
	if env.lim == nil {
		return r
	}
	return RateLimit(r, env.lim)
}

func (env *isoEnv) open(t *testing.T) *os.File {
	f, err := os.Open(env.big)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// unreadTCP returns a TCP connection whose peer never reads, with small
// buffers on both sides (a zero window soon), and the peer.
func unreadTCP(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	a, b := tcpPair(t)
	smallBuffers(t, 4<<10, a, b)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// fedTCP returns a TCP connection its peer writes data to (and closes
// after), from a goroutine that ends when the test does.
func fedTCP(t *testing.T, data []byte) *net.TCPConn {
	a, b := tcpPair(t)
	t.Cleanup(func() { a.Close() })
	feedQuietly(t, b, data)
	return a
}

// blockForever is a Reader and Writer with no descriptor whose calls
// block until released.
type blockForever struct{ release chan struct{} }

func (b blockForever) Read([]byte) (int, error) {
	<-b.release
	return 0, io.ErrUnexpectedEOF
}

func (b blockForever) Write([]byte) (int, error) {
	<-b.release
	return 0, io.ErrShortWrite
}

var isoHostiles = []isoHostile{
	{name: "file->tcp unread", start: func(t *testing.T, e *Engine, env *isoEnv) (*Future, func(), func()) {
		dst, peer := unreadTCP(t)
		f := e.CopyAsync(context.Background(), dst, env.pace(env.open(t)))
		return f, func() { isoStalled(t, f) }, isoOnce(func() { peer.Close() })
	}},
	{name: "tcp->tcp unread", start: func(t *testing.T, e *Engine, env *isoEnv) (*Future, func(), func()) {
		dst, peer := unreadTCP(t)
		f := e.CopyAsync(context.Background(), dst, env.pace(fedTCP(t, env.data)))
		return f, func() { isoStalled(t, f) }, isoOnce(func() { peer.Close() })
	}},
	{name: "tcp->tcp byte reader", start: func(t *testing.T, e *Engine, env *isoEnv) (*Future, func(), func()) {
		dst, peer := unreadTCP(t)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			var b [1]byte
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				if _, err := peer.Read(b[:]); err != nil {
					return
				}
			}
		}()
		f := e.CopyAsync(context.Background(), dst, env.pace(fedTCP(t, env.data)))
		release := isoOnce(func() { close(stop); peer.Close(); <-done })
		t.Cleanup(release)
		return f, func() { isoUntil(t, func() bool { return f.Written() > 0 }, "first bytes") }, release
	}},
	{name: "file->unix unread", start: func(t *testing.T, e *Engine, env *isoEnv) (*Future, func(), func()) {
		dst, peer := unixPair(t)
		t.Cleanup(func() { dst.Close(); peer.Close() })
		f := e.CopyAsync(context.Background(), dst, env.pace(env.open(t)))
		return f, func() { isoStalled(t, f) }, isoOnce(func() { peer.Close() })
	}},
	{name: "file->blocking tcp unread", start: func(t *testing.T, e *Engine, env *isoEnv) (*Future, func(), func()) {
		dst, peer := blockingSocket(t, "tcp", 4<<10)
		f := e.CopyAsync(context.Background(), dst, env.pace(env.open(t)))
		return f, func() { isoStalled(t, f) }, isoOnce(func() { peer.Close() })
	}},
	{name: "tcp->blocking unix unread", start: func(t *testing.T, e *Engine, env *isoEnv) (*Future, func(), func()) {
		dst, peer := blockingSocket(t, "unix", 4<<10)
		f := e.CopyAsync(context.Background(), dst, env.pace(fedTCP(t, env.data)))
		return f, func() { isoStalled(t, f) }, isoOnce(func() { peer.Close() })
	}},
	{name: "file->pipe unread", start: func(t *testing.T, e *Engine, env *isoEnv) (*Future, func(), func()) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); w.Close() })
		f := e.CopyAsync(context.Background(), w, env.pace(env.open(t)))
		return f, func() { isoStalled(t, f) }, isoOnce(func() { r.Close() })
	}},
	{name: "file->blocking pipe unread", start: func(t *testing.T, e *Engine, env *isoEnv) (*Future, func(), func()) {
		r, w := blockingPipe(t)
		f := e.CopyAsync(context.Background(), w, env.pace(env.open(t)))
		return f, func() { isoStalled(t, f) }, isoOnce(func() { r.Close() })
	}},
	{name: "tcp->blocking pipe unread", start: func(t *testing.T, e *Engine, env *isoEnv) (*Future, func(), func()) {
		r, w := blockingPipe(t)
		f := e.CopyAsync(context.Background(), w, env.pace(fedTCP(t, env.data)))
		return f, func() { isoStalled(t, f) }, isoOnce(func() { r.Close() })
	}},
	{name: "fifo unread", start: func(t *testing.T, e *Engine, env *isoEnv) (*Future, func(), func()) {
		// The fifo's reader opened it and never reads.
		path := newFifo(t)
		r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, w, err := OpenFifo(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); w.Close() })
		f := e.CopyAsync(context.Background(), w, env.pace(fedTCP(t, env.data)))
		return f, func() { isoStalled(t, f) }, isoOnce(func() { r.Close() })
	}},
	{name: "silent pipe->tcp", start: func(t *testing.T, e *Engine, env *isoEnv) (*Future, func(), func()) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); w.Close() })
		dst, peer := tcpPair(t)
		t.Cleanup(func() { dst.Close(); peer.Close() })
		go io.Copy(io.Discard, peer)
		w.Write(env.data[:4096])
		f := e.CopyAsync(context.Background(), dst, env.pace(r))
		return f, func() { isoUntil(t, func() bool { return f.Written() == 4096 }, "first bytes") }, isoOnce(func() { w.Close() })
	}},
	{name: "silent blocking pipe->pipe", start: func(t *testing.T, e *Engine, env *isoEnv) (*Future, func(), func()) {
		r, w := blockingPipe(t)
		dr, dw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dr.Close(); dw.Close() })
		go io.Copy(io.Discard, dr)
		w.Write(env.data[:4096])
		f := e.CopyAsync(context.Background(), dw, env.pace(r))
		return f, func() { isoUntil(t, func() bool { return f.Written() == 4096 }, "first bytes") }, isoOnce(func() { w.Close() })
	}},
	{name: "silent tcp->file", start: func(t *testing.T, e *Engine, env *isoEnv) (*Future, func(), func()) {
		src, peer := tcpPair(t)
		t.Cleanup(func() { src.Close(); peer.Close() })
		dst, err := os.Create(filepath.Join(t.TempDir(), "silent"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dst.Close() })
		peer.Write(env.data[:4096])
		f := e.CopyAsync(context.Background(), dst, env.pace(src))
		return f, func() { isoUntil(t, func() bool { return f.Written() == 4096 }, "first bytes") }, isoOnce(func() { peer.Close() })
	}},
	{name: "slow pipe->tcp unread", start: func(t *testing.T, e *Engine, env *isoEnv) (*Future, func(), func()) {
		// A source fed a byte at a time into a destination nobody reads.
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); w.Close() })
		dst, peer := unreadTCP(t)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				if _, err := w.Write(env.data[i%len(env.data) : i%len(env.data)+1]); err != nil {
					return
				}
			}
		}()
		f := e.CopyAsync(context.Background(), dst, env.pace(r))
		release := isoOnce(func() { close(stop); <-done; w.Close(); peer.Close() })
		t.Cleanup(release)
		return f, func() { isoUntil(t, func() bool { return f.Written() > 0 }, "first bytes") }, release
	}},
	{name: "tcp->tcp reset", ends: true, start: func(t *testing.T, e *Engine, env *isoEnv) (*Future, func(), func()) {
		dst, peer := unreadTCP(t)
		f := e.CopyAsync(context.Background(), dst, env.pace(fedTCP(t, env.data)))
		return f, func() {
			isoStalled(t, f)
			peer.SetLinger(0)
			peer.Close()
		}, func() {}
	}},
	{name: "blocking Writer", uninterruptible: true, start: func(t *testing.T, e *Engine, env *isoEnv) (*Future, func(), func()) {
		b := blockForever{make(chan struct{})}
		f := e.CopyAsync(context.Background(), onlyWriter{b}, env.pace(fedTCP(t, env.data)))
		release := isoOnce(func() { close(b.release) })
		t.Cleanup(release)
		return f, func() {}, release
	}},
	{name: "blocking Reader", uninterruptible: true, start: func(t *testing.T, e *Engine, env *isoEnv) (*Future, func(), func()) {
		b := blockForever{make(chan struct{})}
		dst, peer := unreadTCP(t)
		f := e.CopyAsync(context.Background(), dst, env.pace(onlyReader{b}))
		release := isoOnce(func() { close(b.release); peer.Close() })
		t.Cleanup(release)
		return f, func() {}, release
	}},
}

// isoHealthy is copy B: a copy of n bytes between ends that keep up.
type isoHealthy struct {
	name string
	// start returns B's source and destination; check, called after the
	// copy, checks what the destination received.
	ends func(t *testing.T, env *isoEnv, n int) (dst io.Writer, src io.Reader, check func(t *testing.T))
}

// isoSink is a destination drained by the test into a hash.
func isoSink(t *testing.T, w io.WriteCloser, r io.ReadCloser, want []byte) (io.Writer, func(t *testing.T)) {
	s := drainInto(t, w, r)
	return s.w, func(t *testing.T) {
		n, sum := s.finish()
		if n != int64(len(want)) || sum != sha256.Sum256(want) {
			t.Errorf("destination got %d bytes (hash match %v), want %d", n, sum == sha256.Sum256(want), len(want))
		}
	}
}

func isoFileSrc(t *testing.T, env *isoEnv, n int) io.Reader {
	return &io.LimitedReader{R: env.open(t), N: int64(n)}
}

var isoHealthies = []isoHealthy{
	{"file->tcp", func(t *testing.T, env *isoEnv, n int) (io.Writer, io.Reader, func(*testing.T)) {
		a, b := tcpPair(t)
		w, check := isoSink(t, a, b, env.data[:n])
		return w, isoFileSrc(t, env, n), check
	}},
	{"file->unix", func(t *testing.T, env *isoEnv, n int) (io.Writer, io.Reader, func(*testing.T)) {
		a, b := unixPair(t)
		w, check := isoSink(t, a, b, env.data[:n])
		return w, isoFileSrc(t, env, n), check
	}},
	{"file->pipe", func(t *testing.T, env *isoEnv, n int) (io.Writer, io.Reader, func(*testing.T)) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		dst, check := isoSink(t, w, r, env.data[:n])
		return dst, isoFileSrc(t, env, n), check
	}},
	{"tcp->tcp", func(t *testing.T, env *isoEnv, n int) (io.Writer, io.Reader, func(*testing.T)) {
		a, b := tcpPair(t)
		w, check := isoSink(t, a, b, env.data[:n])
		return w, fedTCP(t, env.data[:n]), check
	}},
	{"unix->file", func(t *testing.T, env *isoEnv, n int) (io.Writer, io.Reader, func(*testing.T)) {
		a, b := unixPair(t)
		t.Cleanup(func() { a.Close() })
		feedQuietly(t, b, env.data[:n])
		s := fileSink(t)
		return s.w, a, func(t *testing.T) {
			got, sum := s.finish()
			if got != int64(n) || sum != sha256.Sum256(env.data[:n]) {
				t.Errorf("destination got %d bytes, want %d", got, n)
			}
		}
	}},
	{"pipe->tcp", func(t *testing.T, env *isoEnv, n int) (io.Writer, io.Reader, func(*testing.T)) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		feedQuietly(t, w, env.data[:n])
		a, b := tcpPair(t)
		dst, check := isoSink(t, a, b, env.data[:n])
		return dst, r, check
	}},
	{"blocking pipe->blocking pipe", func(t *testing.T, env *isoEnv, n int) (io.Writer, io.Reader, func(*testing.T)) {
		sr, sw := blockingPipe(t)
		feedQuietly(t, sw, env.data[:n])
		dr, dw := blockingPipe(t)
		dst, check := isoSink(t, dw, dr, env.data[:n])
		return dst, sr, check
	}},
}

// isoConfig is an engine configuration whose shared resources the
// hostile copies contend for.
type isoConfig struct {
	name    string
	opts    []Option
	limiter bool // pace every copy by one shared Limiter
}

var isoConfigs = []isoConfig{
	{name: "default"},
	{name: "pipes=1", opts: []Option{WithMaxPipes(1)}},
	{name: "pipes=2", opts: []Option{WithMaxPipes(2)}},
	{name: "ring", opts: []Option{WithRingMinConcurrency(0)}},
	{name: "ring,turns=1,pipes=1", opts: []Option{WithRingMinConcurrency(0), WithSendTurns(1), WithMaxPipes(1)}},
	{name: "limiter", limiter: true},
}

// isoHostileCopies is how many hostile copies of a kind run at once:
// more than the pipes and turns of the configurations above.
const isoHostileCopies = 3

// TestIsolation runs, for every engine configuration and every kind of
// hostile copy, isoHostileCopies hostile copies stuck on their peers,
// then healthy copies of every kind (4 KiB and 64 MiB): each must
// complete, with every byte, while the hostile ones are still running.
// Close must then end the hostile copies with ErrClosed (or
// os.ErrClosed) without their peers, and leave no descriptor behind.
func TestIsolation(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB copies")
	}
	data := fdtest.Random(isoBig())
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range isoConfigs {
		for _, h := range isoHostiles {
			t.Run(cfg.name+"/"+h.name, func(t *testing.T) {
				env := &isoEnv{big: big, data: data}
				if cfg.limiter {
					env.lim = NewLimiter(4<<30, 64<<20)
				}
				runIsolation(t, cfg, h, env)
			})
		}
	}
}

func runIsolation(t *testing.T, cfg isoConfig, h isoHostile, env *isoEnv) {
	fdtest.Check(t)
	e, err := NewEngine(cfg.opts...)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			e.Close()
		}
	})
	var hostile []*Future
	var releases []func()
	for range isoHostileCopies {
		f, stall, release := h.start(t, e, env)
		t.Cleanup(release)
		stall()
		hostile = append(hostile, f)
		releases = append(releases, release)
	}
	type healthy struct {
		name  string
		f     *Future
		n     int
		check func(*testing.T)
	}
	var runs []healthy
	for _, b := range isoHealthies {
		for _, n := range []int{4 << 10, len(env.data)} {
			dst, src, check := b.ends(t, env, n)
			runs = append(runs, healthy{b.name, e.CopyAsync(context.Background(), dst, env.pace(src)), n, check})
		}
	}
	for _, r := range runs {
		isoWait(t, r.f.Done(), "healthy "+r.name)
		if got, err := r.f.Wait(); got != int64(r.n) || err != nil {
			t.Errorf("healthy %s of %d bytes = (%d, %v)", r.name, r.n, got, err)
		}
	}
	if !h.ends {
		for i, f := range hostile {
			select {
			case <-f.Done():
				n, err := f.Wait()
				t.Errorf("hostile copy %d ended before its peer was released: (%d, %v)", i, n, err)
			default:
			}
		}
	}
	for _, r := range runs {
		r.check(t)
	}
	if h.uninterruptible {
		for _, release := range releases {
			release()
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	isoWait(t, done, "Close with hostile copies")
	closed = true
	for i, f := range hostile {
		isoWait(t, f.Done(), "hostile copy after Close")
		_, err := f.Wait()
		switch {
		case h.ends || h.uninterruptible:
			if err == nil {
				t.Errorf("hostile copy %d: nil error", i)
			}
		case !errors.Is(err, ErrClosed) && !errors.Is(err, os.ErrClosed):
			t.Errorf("hostile copy %d after Close: %v, want ErrClosed", i, err)
		}
	}
	for _, release := range releases {
		release()
	}
}
