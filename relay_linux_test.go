//go:build !pipes_portable

package pipes

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// relayEnd makes one end of a relay and the peer that talks to it.
type relayEnd func(t *testing.T) (end io.ReadWriter, peer net.Conn)

func closeAtEnd(t *testing.T, cs ...io.Closer) {
	t.Cleanup(func() {
		for _, c := range cs {
			c.Close()
		}
	})
}

var relayEnds = map[string]relayEnd{
	"tcp": func(t *testing.T) (io.ReadWriter, net.Conn) {
		a, b := tcpPair(t)
		closeAtEnd(t, a, b)
		return a, b
	},
	"unix": func(t *testing.T) (io.ReadWriter, net.Conn) {
		a, b := unixPair(t)
		closeAtEnd(t, a, b)
		return a, b
	},
	// No descriptor, no CloseWrite: a userspace copy, woken by deadlines.
	"pipe": func(t *testing.T) (io.ReadWriter, net.Conn) {
		a, b := net.Pipe()
		closeAtEnd(t, a, b)
		return a, b
	},
}

// relayPairs are the kinds of a and b the relay tests run on.
var relayPairs = [][2]string{
	{"tcp", "tcp"},
	{"unix", "unix"},
	{"tcp", "unix"},
	{"pipe", "tcp"},
	{"unix", "pipe"},
}

// relayData returns n reproducible pseudo-random bytes, different for
// each seed.
func relayData(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed, byte(n), byte(n >> 8), byte(n >> 16)}).Read(b)
	return b
}

type relayResult struct {
	aToB, bToA int64
	err        error
}

// startRelay runs e.RelayWith in a goroutine.
func startRelay(e *Engine, ctx context.Context, a, b io.ReadWriter, opts ...RelayOption) <-chan relayResult {
	ch := make(chan relayResult, 1)
	go func() {
		x, y, err := e.RelayWith(ctx, a, b, opts...)
		ch <- relayResult{x, y, err}
	}()
	return ch
}

// waitRelay fails t unless the relay ends within 30 s.
func waitRelay(t *testing.T, ch <-chan relayResult) relayResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("the relay did not end")
		return relayResult{}
	}
}

type peerResult struct {
	n   int64
	sum [32]byte
	err error
}

type closeWriter interface{ CloseWrite() error }

// converse has peer send data and end its stream, and hashes what peer
// receives until EOF. A net.Pipe peer cannot half-close: it reads the
// want bytes it expects, then closes once its data is sent.
func converse(peer net.Conn, send []byte, want int) <-chan peerResult {
	ch := make(chan peerResult, 1)
	cw, halfClose := peer.(closeWriter)
	wrote := make(chan error, 1)
	go func() {
		var err error
		if len(send) > 0 {
			_, err = peer.Write(send)
		}
		if err == nil && halfClose {
			err = cw.CloseWrite()
		}
		wrote <- err
	}()
	go func() {
		var r peerResult
		h := sha256.New()
		peer.SetReadDeadline(time.Now().Add(30 * time.Second))
		if halfClose {
			r.n, r.err = io.Copy(h, peer)
		} else {
			r.n, r.err = io.CopyN(h, peer, int64(want))
		}
		copy(r.sum[:], h.Sum(nil))
		if werr := <-wrote; r.err == nil && werr != nil {
			r.err = fmt.Errorf("peer write: %w", werr)
		}
		if !halfClose {
			peer.Close()
		}
		ch <- r
	}()
	return ch
}

// TestRelayMatrix relays both directions at once between every pair of
// end kinds, at several sizes, and checks the bytes by hash, the counts,
// and the path each direction took.
func TestRelayMatrix(t *testing.T) {
	fdtest.Check(t)
	sizes := []int{0, 1, 64<<10 + 1, 4 << 20}
	if testing.Short() {
		sizes = []int{0, 64<<10 + 1}
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, pair := range relayPairs {
			for _, size := range sizes {
				t.Run(fmt.Sprintf("%s/%s<->%s/%d", ec.name, pair[0], pair[1], size), func(t *testing.T) {
					a, pa := relayEnds[pair[0]](t)
					b, pb := relayEnds[pair[1]](t)
					toB, toA := relayData(size, 1), relayData(size, 2)
					before := e.Stats()
					gotA := converse(pa, toB, len(toA))
					gotB := converse(pb, toA, len(toB))
					r := waitRelay(t, startRelay(e, context.Background(), a, b))
					if r.err != nil || r.aToB != int64(size) || r.bToA != int64(size) {
						t.Fatalf("Relay = (%d, %d, %v), want (%d, %d, nil)", r.aToB, r.bToA, r.err, size, size)
					}
					for _, c := range []struct {
						name string
						got  peerResult
						want []byte
					}{{"a's peer", <-gotA, toA}, {"b's peer", <-gotB, toB}} {
						if c.got.err != nil || c.got.n != int64(len(c.want)) || c.got.sum != sha256.Sum256(c.want) {
							t.Errorf("%s received %d bytes (hash match %v, err %v), want %d",
								c.name, c.got.n, c.got.sum == sha256.Sum256(c.want), c.got.err, len(c.want))
						}
					}
					after := e.Stats()
					userspace := after.Userspace - before.Userspace
					wantUserspace := uint64(0)
					if pair[0] == "pipe" || pair[1] == "pipe" {
						wantUserspace = 2
					}
					if after.Copies-before.Copies != 2 || userspace != wantUserspace {
						t.Errorf("Stats: %d copies, %d in userspace; want 2, %d", after.Copies-before.Copies, userspace, wantUserspace)
					}
				})
			}
		}
	}
}

// TestRelayHalfClose: one side finishes sending first; its peer reads
// every byte and then EOF, while the other side keeps sending 1 MiB more,
// which arrives whole too, followed by EOF.
func TestRelayHalfClose(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, pair := range [][2]string{{"tcp", "tcp"}, {"unix", "tcp"}} {
			for _, first := range []string{"a", "b"} {
				t.Run(fmt.Sprintf("%s/%s<->%s/%s-first", ec.name, pair[0], pair[1], first), func(t *testing.T) {
					a, pa := relayEnds[pair[0]](t)
					b, pb := relayEnds[pair[1]](t)
					pFirst, pSecond := pa, pb
					if first == "b" {
						pFirst, pSecond = pb, pa
					}
					firstData := relayData(256<<10+7, 3)
					secondData := relayData(64<<10+1<<20, 4)
					// Generous timeouts that must not fire: their
					// timers run alongside.
					res := startRelay(e, context.Background(), a, b,
						RelayHalfCloseTimeout(20*time.Second), RelayIdleTimeout(20*time.Second))

					sawEOF := make(chan struct{})
					gotSecond := make(chan peerResult, 1)
					go func() { // the second side's reader: slow to start
						time.Sleep(50 * time.Millisecond)
						var r peerResult
						pSecond.SetReadDeadline(time.Now().Add(20 * time.Second))
						h := sha256.New()
						r.n, r.err = io.Copy(h, pSecond)
						copy(r.sum[:], h.Sum(nil))
						close(sawEOF)
						gotSecond <- r
					}()
					secondWrote := make(chan error, 1)
					go func() { // the second side's writer
						if _, err := pSecond.Write(secondData[:64<<10]); err != nil {
							secondWrote <- err
							return
						}
						select {
						case <-sawEOF:
						case <-time.After(20 * time.Second):
							secondWrote <- errors.New("no EOF passed on")
							return
						}
						if _, err := pSecond.Write(secondData[64<<10:]); err != nil {
							secondWrote <- err
							return
						}
						secondWrote <- pSecond.(closeWriter).CloseWrite()
					}()
					gotFirst := make(chan peerResult, 1)
					go func() { // the first side's reader
						var r peerResult
						pFirst.SetReadDeadline(time.Now().Add(20 * time.Second))
						h := sha256.New()
						r.n, r.err = io.Copy(h, pFirst)
						copy(r.sum[:], h.Sum(nil))
						gotFirst <- r
					}()
					if _, err := pFirst.Write(firstData); err != nil {
						t.Fatal(err)
					}
					if err := pFirst.(closeWriter).CloseWrite(); err != nil {
						t.Fatal(err)
					}

					r := waitRelay(t, res)
					if err := <-secondWrote; err != nil {
						t.Fatalf("second side: %v", err)
					}
					fromFirst, fromSecond := r.aToB, r.bToA
					if first == "b" {
						fromFirst, fromSecond = r.bToA, r.aToB
					}
					if r.err != nil || fromFirst != int64(len(firstData)) || fromSecond != int64(len(secondData)) {
						t.Fatalf("Relay = (%d, %d, %v); want %d from the first side, %d from the second, nil",
							r.aToB, r.bToA, r.err, len(firstData), len(secondData))
					}
					if g := <-gotSecond; g.err != nil || g.n != int64(len(firstData)) || g.sum != sha256.Sum256(firstData) {
						t.Errorf("the second side read %d bytes then %v, want the first side's %d then EOF", g.n, g.err, len(firstData))
					}
					if g := <-gotFirst; g.err != nil || g.n != int64(len(secondData)) || g.sum != sha256.Sum256(secondData) {
						t.Errorf("the first side read %d bytes then %v, want the second side's %d then EOF", g.n, g.err, len(secondData))
					}
				})
			}
		}
	}
}

// TestRelayPeerReset: a peer that resets (SetLinger(0), Close) while the
// other streams ends the relay, both directions, with the reset's error.
func TestRelayPeerReset(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, side := range []string{"a", "b"} {
			t.Run(fmt.Sprintf("%s/%s's-peer-resets", ec.name, side), func(t *testing.T) {
				a, pa := tcpPair(t)
				b, pb := tcpPair(t)
				closeAtEnd(t, a, b, pa, pb)
				resetter, streamer := pb, pa
				if side == "a" {
					resetter, streamer = pa, pb
				}
				streamed := make(chan struct{})
				go func() {
					defer close(streamed)
					buf := relayData(64<<10, 5)
					for {
						if _, err := streamer.Write(buf); err != nil {
							return
						}
					}
				}()
				res := startRelay(e, context.Background(), a, b)
				if _, err := io.ReadFull(resetter, make([]byte, 4096)); err != nil {
					t.Fatal(err)
				}
				resetter.SetLinger(0)
				resetter.Close()
				r := waitRelay(t, res)
				t.Logf("Relay = (%d, %d, %v)", r.aToB, r.bToA, r.err)
				if !errors.Is(r.err, syscall.ECONNRESET) && !errors.Is(r.err, syscall.EPIPE) {
					t.Errorf("Relay error = %v, want ECONNRESET or EPIPE", r.err)
				}
				if delivered := r.aToB + r.bToA; delivered < 4096 {
					t.Errorf("Relay = (%d, %d): fewer than the 4096 bytes the resetting peer read", r.aToB, r.bToA)
				}
				// The relay closed nothing: closing is the caller's,
				// and ends the streamer's writes.
				a.Close()
				b.Close()
				<-streamed
			})
		}
	}
}

// TestRelayIdleTimeout: a trickle in one direction keeps the relay
// alive; RelayIdleTimeout ends it once the trickle stops, on the kernel
// and the userspace paths, and leaves both ends usable.
func TestRelayIdleTimeout(t *testing.T) {
	fdtest.Check(t)
	const idle = 150 * time.Millisecond
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		// A TCPConn is an io.ReaderFrom and an io.WriterTo: with a
		// net.Pipe on the other side the copies run in userspace, and
		// must count their bytes as they go all the same.
		for _, pair := range [][2]string{{"tcp", "tcp"}, {"pipe", "tcp"}, {"tcp", "pipe"}} {
			t.Run(fmt.Sprintf("%s/%s<->%s", ec.name, pair[0], pair[1]), func(t *testing.T) {
				a, pa := relayEnds[pair[0]](t)
				b, pb := relayEnds[pair[1]](t)
				const ticks, tick = 10, 10
				// A relay that ends too early fails the test, not hangs it.
				pa.SetWriteDeadline(time.Now().Add(10 * time.Second))
				pb.SetReadDeadline(time.Now().Add(10 * time.Second))
				got := make(chan error, 1)
				go func() { _, err := io.ReadFull(pb, make([]byte, ticks*tick)); got <- err }()
				res := startRelay(e, context.Background(), a, b, RelayIdleTimeout(idle))
				var last time.Time
				for range ticks {
					if _, err := pa.Write(make([]byte, tick)); err != nil {
						t.Fatalf("a's peer: %v (did the relay end early?)", err)
					}
					last = time.Now()
					time.Sleep(idle / 5)
				}
				select {
				case r := <-res:
					t.Fatalf("the relay ended while bytes were moving: (%d, %d, %v)", r.aToB, r.bToA, r.err)
				default:
				}
				r := waitRelay(t, res)
				waited := time.Since(last)
				if !errors.Is(r.err, os.ErrDeadlineExceeded) || r.aToB != ticks*tick || r.bToA != 0 {
					t.Fatalf("Relay = (%d, %d, %v), want (%d, 0, os.ErrDeadlineExceeded)", r.aToB, r.bToA, r.err, ticks*tick)
				}
				if waited < idle-10*time.Millisecond || waited > idle+2*time.Second {
					t.Errorf("the relay ended %v after the last byte, want about %v", waited, idle)
				}
				if err := <-got; err != nil {
					t.Fatalf("b's peer: %v", err)
				}
				pa.SetWriteDeadline(time.Time{})
				pb.SetReadDeadline(time.Time{})
				checkUsable(t, a, pa)
				checkUsable(t, b, pb)
			})
		}
	}
}

// checkUsable checks that end reads what peer writes and peer what end
// writes, with no deadline left behind by a relay or a copy that was
// ended.
func checkUsable(t *testing.T, end, peer io.ReadWriter) {
	t.Helper()
	for _, dir := range []struct {
		w io.Writer
		r io.Reader
	}{{peer, end}, {end, peer}} {
		wrote := make(chan error, 1)
		go func() { _, err := dir.w.Write([]byte("again")); wrote <- err }()
		buf := make([]byte, 5)
		if _, err := io.ReadFull(dir.r, buf); err != nil || string(buf) != "again" {
			t.Fatalf("reading after the relay or copy: %q, %v", buf, err)
		}
		if err := <-wrote; err != nil {
			t.Fatalf("writing after the relay or copy: %v", err)
		}
	}
}

// TestRelayHalfCloseTimeout: after a's peer half-closes, b's peer sees
// EOF and the relay waits RelayHalfCloseTimeout for b's side, no longer.
func TestRelayHalfCloseTimeout(t *testing.T) {
	fdtest.Check(t)
	const wait = 100 * time.Millisecond
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		a, pa := relayEnds["tcp"](t)
		b, pb := relayEnds["unix"](t)
		start := time.Now()
		res := startRelay(e, context.Background(), a, b, RelayHalfCloseTimeout(wait))
		pa.(closeWriter).CloseWrite()
		pb.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := pb.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("%s: b's peer read (%d, %v), want EOF", ec.name, n, err)
		}
		r := waitRelay(t, res)
		if !errors.Is(r.err, os.ErrDeadlineExceeded) || r.aToB != 0 || r.bToA != 0 {
			t.Fatalf("%s: Relay = (%d, %d, %v), want (0, 0, os.ErrDeadlineExceeded)", ec.name, r.aToB, r.bToA, r.err)
		}
		if d := time.Since(start); d < wait {
			t.Errorf("%s: the relay ended after %v, before the %v timeout", ec.name, d, wait)
		}
	}
}

// TestRelayCancel ends relays through their context: a cancel with and
// without a cause of the caller's own, and a deadline. The error matches
// ctx.Err() and the cause, the counts are what was delivered, and both
// ends are usable afterwards.
func TestRelayCancel(t *testing.T) {
	fdtest.Check(t)
	cause := errors.New("client went away")
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, pair := range [][2]string{{"tcp", "unix"}, {"pipe", "tcp"}} {
			for _, how := range []string{"cancel", "cause", "deadline"} {
				t.Run(fmt.Sprintf("%s/%s<->%s/%s", ec.name, pair[0], pair[1], how), func(t *testing.T) {
					a, pa := relayEnds[pair[0]](t)
					b, pb := relayEnds[pair[1]](t)
					ctx, cancel := context.WithCancelCause(context.Background())
					defer cancel(nil)
					if how == "deadline" {
						var stop context.CancelFunc
						ctx, stop = context.WithTimeout(ctx, 200*time.Millisecond)
						defer stop()
					}
					res := startRelay(e, ctx, a, b)
					go pa.Write([]byte("hello"))
					if _, err := io.ReadFull(pb, make([]byte, 5)); err != nil {
						t.Fatal(err)
					}
					start := time.Now()
					switch how {
					case "cancel":
						cancel(nil)
					case "cause":
						cancel(cause)
					}
					r := waitRelay(t, res)
					if d := time.Since(start); d > 2*time.Second {
						t.Errorf("the relay took %v to end", d)
					}
					if !errors.Is(r.err, ctx.Err()) || (how == "cause" && !errors.Is(r.err, cause)) {
						t.Fatalf("Relay error = %v, want one matching %v (and the cause)", r.err, ctx.Err())
					}
					if r.aToB != 5 || r.bToA != 0 {
						t.Errorf("Relay = (%d, %d), want (5, 0)", r.aToB, r.bToA)
					}
					checkUsable(t, a, pa)
					checkUsable(t, b, pb)
				})
			}
		}
	}
}

// TestRelayEngineClose closes the engine under a relay: the relay ends
// with an error wrapping ErrClosed, and a later one fails at once.
func TestRelayEngineClose(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		a, pa := relayEnds["tcp"](t)
		b, pb := relayEnds["unix"](t)
		res := startRelay(e, context.Background(), a, b)
		go pb.Write([]byte("hi"))
		if _, err := io.ReadFull(pa, make([]byte, 2)); err != nil {
			t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			t.Fatalf("%s: Close: %v", ec.name, err)
		}
		if r := waitRelay(t, res); !errors.Is(r.err, ErrClosed) || r.bToA != 2 {
			t.Fatalf("%s: Relay = (%d, %d, %v), want (0, 2, ErrClosed)", ec.name, r.aToB, r.bToA, r.err)
		}
		if r := waitRelay(t, startRelay(e, context.Background(), a, b)); !errors.Is(r.err, ErrClosed) {
			t.Fatalf("%s: Relay on a closed engine: %v, want ErrClosed", ec.name, r.err)
		}
	}
}

// eofRW reads EOF and takes every write; it is not comparable.
type eofRW struct{ tag []byte }

func (eofRW) Read([]byte) (int, error)    { return 0, io.EOF }
func (eofRW) Write(p []byte) (int, error) { return len(p), nil }

// incomparable is comparable as a type, but not with an eofRW inside.
type incomparable struct{ io.ReadWriter }

// TestRelayBadInput: nil ends, typed nils, the same end twice (as one
// value, or as two values of one socket or pipe), a context already done
// and a closed engine fail at once with a clear error; values == cannot
// compare do not panic, and a device opened twice is two ends.
func TestRelayBadInput(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	a, pa := tcpPair(t)
	b, pb := unixPair(t)
	closeAtEnd(t, a, b, pa, pb)
	done, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("gone")
	cancel(cause)
	closed, err := NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	// a's socket under other values: the *os.File of a duplicate
	// (File), and two *net.TCPConn of two more duplicates (FileConn).
	af, err := a.File()
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, af)
	var dups [2]net.Conn
	for i := range dups {
		if dups[i], err = net.FileConn(af); err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, dups[i])
	}
	// One socket as a *net.TCPConn made before it connected (no remote
	// address, local 0.0.0.0:0) and one made after.
	early, late := connectedLate(t)
	// One fifo opened twice: two open files of one pipe.
	fifo := newFifo(t)
	var fifos [2]*os.File
	for i := range fifos {
		if fifos[i], err = os.OpenFile(fifo, os.O_RDWR, 0); err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, fifos[i])
	}
	for _, c := range []struct {
		name string
		e    *Engine
		ctx  context.Context
		a, b io.ReadWriter
		want []error
	}{
		{"nil-a", e, nil, nil, b, []error{os.ErrInvalid}},
		{"nil-b", e, nil, a, nil, []error{os.ErrInvalid}},
		{"nil-both", e, nil, nil, nil, []error{os.ErrInvalid}},
		{"typed-nil-tcp", e, nil, (*net.TCPConn)(nil), b, []error{os.ErrInvalid}},
		{"typed-nil-unix", e, nil, a, (*net.UnixConn)(nil), []error{os.ErrInvalid}},
		{"typed-nil-file", e, nil, a, (*os.File)(nil), []error{os.ErrInvalid}},
		{"same", e, nil, a, a, []error{os.ErrInvalid}},
		{"same-wrapped", e, nil, struct{ net.Conn }{a}, struct{ net.Conn }{a}, []error{os.ErrInvalid}},
		{"same-socket-conn-file", e, nil, a, af, []error{os.ErrInvalid}},
		{"same-socket-file-conn", e, nil, af, a, []error{os.ErrInvalid}},
		{"same-socket-fileconns", e, nil, dups[0], dups[1], []error{os.ErrInvalid}},
		{"same-socket-fileconns-connected-between", e, nil, early, late, []error{os.ErrInvalid}},
		{"same-fifo", e, nil, fifos[0], fifos[1], []error{os.ErrInvalid}},
		{"ctx-done", e, done, a, b, []error{context.Canceled, cause}},
		{"closed-engine", closed, nil, a, b, []error{ErrClosed}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := waitRelay(t, startRelay(c.e, c.ctx, c.a, c.b))
			for _, w := range c.want {
				if !errors.Is(r.err, w) {
					t.Errorf("Relay error = %v, want one matching %v", r.err, w)
				}
			}
			if r.aToB != 0 || r.bToA != 0 {
				t.Errorf("Relay = (%d, %d), want nothing moved", r.aToB, r.bToA)
			}
		})
	}
	// Two opens of one device, which are not compared (distinct
	// terminals opened from /dev/ptmx share its inode).
	var nulls [2]*os.File
	for i := range nulls {
		if nulls[i], err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, nulls[i])
	}
	// Values that == would panic on, and the device: no panic, an
	// ordinary relay.
	for _, c := range []struct {
		name string
		a, b io.ReadWriter
	}{
		{"incomparable-type", eofRW{[]byte("x")}, eofRW{[]byte("x")}},
		{"incomparable-dynamic-value", incomparable{eofRW{}}, incomparable{eofRW{}}},
		{"device-opened-twice", nulls[0], nulls[1]},
	} {
		t.Run(c.name, func(t *testing.T) {
			if r := waitRelay(t, startRelay(e, nil, c.a, c.b)); r.err != nil {
				t.Errorf("Relay = (%d, %d, %v), want nil", r.aToB, r.bToA, r.err)
			}
		})
	}
	// The ends were left untouched.
	checkUsable(t, a, pa)
	checkUsable(t, b, pb)
}

// connectedLate returns two *net.TCPConn of one TCP socket: early, made
// by net.FileConn before the socket connected, and late, made once it
// had; both are closed when t ends, and so is the socket's peer.
func connectedLate(t *testing.T) (early, late *net.TCPConn) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(s), "tcp")
	defer f.Close()
	fileConn := func() *net.TCPConn {
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		closeAtEnd(t, c)
		return c.(*net.TCPConn)
	}
	early = fileConn() // makes the socket non-blocking
	to := &syscall.SockaddrInet4{Port: ln.Addr().(*net.TCPAddr).Port, Addr: [4]byte{127, 0, 0, 1}}
	if err := syscall.Connect(s, to); err != nil && err != syscall.EINPROGRESS {
		t.Fatal(err)
	}
	peer, err := ln.Accept() // the handshake is done
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, peer)
	late = fileConn()
	if early.RemoteAddr() != nil || late.RemoteAddr() == nil {
		t.Fatalf("remote addresses %v and %v, want none and one", early.RemoteAddr(), late.RemoteAddr())
	}
	return early, late
}

// TestCopyContext: CopyContext copies between every kind of source and
// destination, and ends with its context, before or during the copy, or
// with the engine.
func TestCopyContext(t *testing.T) {
	fdtest.Check(t)
	cause := errors.New("client went away")
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, sk := range sourceKinds {
			for _, dk := range sinkKinds {
				t.Run(fmt.Sprintf("%s/%s->%s", ec.name, sk.name, dk.name), func(t *testing.T) {
					data := fdtest.Random(64<<10 + 1)
					src := sk.make(t, data)
					dst := dk.make(t)
					ctx := context.Background() // no Done channel: only Close ends the copy
					if sk.name != dk.name {
						var cancel context.CancelFunc
						ctx, cancel = context.WithCancel(ctx)
						defer cancel()
					}
					n, err := e.CopyContext(ctx, dst.w, src.r)
					src.close()
					if err != nil || n != int64(len(data)) {
						t.Fatalf("CopyContext = (%d, %v), want (%d, nil)", n, err, len(data))
					}
					if got, sum := dst.finish(); got != int64(len(data)) || sum != sha256.Sum256(data) {
						t.Fatalf("destination got %d bytes (hash match %v), want %d", got, sum == sha256.Sum256(data), len(data))
					}
				})
			}
		}
		for _, pair := range [][2]string{{"tcp", "unix"}, {"pipe", "tcp"}} {
			for _, how := range []string{"cancel", "cause", "deadline"} {
				t.Run(fmt.Sprintf("%s/%s->%s/%s", ec.name, pair[0], pair[1], how), func(t *testing.T) {
					src, psrc := relayEnds[pair[0]](t)
					dst, pdst := relayEnds[pair[1]](t)
					ctx, cancel := context.WithCancelCause(context.Background())
					defer cancel(nil)
					if how == "deadline" {
						var stop context.CancelFunc
						ctx, stop = context.WithTimeout(ctx, 200*time.Millisecond)
						defer stop()
					}
					type result struct {
						n   int64
						err error
					}
					res := make(chan result, 1)
					go func() { n, err := e.CopyContext(ctx, dst, src); res <- result{n, err} }()
					go psrc.Write([]byte("hello"))
					if _, err := io.ReadFull(pdst, make([]byte, 5)); err != nil {
						t.Fatal(err)
					}
					switch how {
					case "cancel":
						cancel(nil)
					case "cause":
						cancel(cause)
					}
					var r result
					select {
					case r = <-res:
					case <-time.After(10 * time.Second):
						t.Fatal("CopyContext did not end")
					}
					if r.n != 5 || !errors.Is(r.err, ctx.Err()) || (how == "cause" && !errors.Is(r.err, cause)) {
						t.Fatalf("CopyContext = (%d, %v), want (5, an error matching %v and the cause)", r.n, r.err, ctx.Err())
					}
					checkUsable(t, src, psrc)
					checkUsable(t, dst, pdst)
				})
			}
		}
		t.Run(ec.name+"/before", func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			cancel(cause)
			n, err := e.CopyContext(ctx, io.Discard, strings.NewReader("abc"))
			if n != 0 || !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
				t.Fatalf("CopyContext = (%d, %v), want (0, context.Canceled and the cause)", n, err)
			}
		})
	}
	t.Run("engine-close", func(t *testing.T) {
		e := newTestEngine(t)
		for _, ctx := range []context.Context{context.Background(), t.Context()} {
			src, psrc := relayEnds["tcp"](t)
			done := make(chan error, 1)
			go func() { _, err := e.CopyContext(ctx, io.Discard, src); done <- err }()
			psrc.Write([]byte("x"))
			time.Sleep(50 * time.Millisecond)
			e.Close()
			if err := <-done; !errors.Is(err, ErrClosed) {
				t.Fatalf("CopyContext ended with %v, want ErrClosed", err)
			}
			e = newTestEngine(t)
		}
		e.Close()
		if _, err := e.CopyContext(context.Background(), io.Discard, strings.NewReader("x")); !errors.Is(err, ErrClosed) {
			t.Fatalf("CopyContext on a closed engine: %v, want ErrClosed", err)
		}
	})
}

// TestRelayDefaultEngine: the package-level Relay and CopyContext run on
// DefaultEngine (no fdtest: its pool keeps pipes for the process).
func TestRelayDefaultEngine(t *testing.T) {
	a, pa := relayEnds["tcp"](t)
	b, pb := relayEnds["tcp"](t)
	toB, toA := relayData(100<<10, 6), relayData(50<<10, 7)
	gotA, gotB := converse(pa, toB, len(toA)), converse(pb, toA, len(toB))
	aToB, bToA, err := Relay(context.Background(), a, b)
	if err != nil || aToB != int64(len(toB)) || bToA != int64(len(toA)) {
		t.Fatalf("Relay = (%d, %d, %v)", aToB, bToA, err)
	}
	if g := <-gotA; g.sum != sha256.Sum256(toA) {
		t.Errorf("a's peer: %d bytes, %v", g.n, g.err)
	}
	if g := <-gotB; g.sum != sha256.Sum256(toB) {
		t.Errorf("b's peer: %d bytes, %v", g.n, g.err)
	}
	var sb strings.Builder
	if n, err := CopyContext(t.Context(), &sb, strings.NewReader("abc")); n != 3 || err != nil || sb.String() != "abc" {
		t.Fatalf("CopyContext = (%d, %v), %q", n, err, sb.String())
	}
}

// resetHolder is a TCP connection, its descriptor hidden, whose Read
// holds a reset it read until CloseWrite has returned: it opens the
// window in which one direction of a relay has taken the peer's reset
// from the socket and not yet recorded it, while the other direction's
// CloseWrite meets the reset connection.
type resetHolder struct {
	c    *net.TCPConn
	held chan struct{} // closed when Read has read the reset
	shut chan struct{} // closed when CloseWrite has returned
}

func (h *resetHolder) Read(p []byte) (int, error) {
	n, err := h.c.Read(p)
	if errors.Is(err, syscall.ECONNRESET) {
		close(h.held)
		select {
		case <-h.shut:
		case <-time.After(20 * time.Second): // the relay never called it
		}
	}
	return n, err
}

func (h *resetHolder) Write(p []byte) (int, error) { return h.c.Write(p) }

func (h *resetHolder) CloseWrite() error {
	defer close(h.shut)
	return h.c.CloseWrite()
}

// TestRelayResetTakenByOtherDirection: a peer resets while the relay's
// other direction reaches EOF. The direction reading the reset peer
// takes the reset from its socket (a read reports it once); the other
// direction's CloseWrite of that socket then fails with ENOTCONN, and
// finds no error pending on it. The relay must still report the reset
// (errors.Is(err, syscall.ECONNRESET)), as RelayWith's doc promises,
// not the ENOTCONN that came first by microseconds.
func TestRelayResetTakenByOtherDirection(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		t.Run(ec.name, func(t *testing.T) {
			e := newCaseEngine(t, ec)
			a, pa := tcpPair(t)
			bc, pb := tcpPair(t)
			closeAtEnd(t, a, pa, bc, pb)
			b := &resetHolder{c: bc, held: make(chan struct{}), shut: make(chan struct{})}
			res := startRelay(e, context.Background(), a, b)
			pb.SetLinger(0)
			pb.Close()
			<-b.held
			if err := pa.CloseWrite(); err != nil { // a -> b reaches EOF
				t.Fatal(err)
			}
			r := waitRelay(t, res)
			if !errors.Is(r.err, syscall.ECONNRESET) {
				t.Errorf("relay error %v; want the reset (ECONNRESET)", r.err)
			}
		})
	}
}

// TestRelayEOFAfterResetTakenByWrite: a peer resets while both
// directions run. The direction writing to it takes the reset from the
// socket (a write reports it once), and the direction reading it then
// reads EOF after the bytes queued before the reset. That EOF must not
// reach the other peer as a clean end (a FIN by CloseWrite) while the
// relay fails with the reset. The writing direction is held, by the
// relay's test hook, before it records its error until the reading one
// has decided, so the window in which the relay has not failed yet stays
// open for as long as the reading direction needs.
func TestRelayEOFAfterResetTakenByWrite(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		t.Run(ec.name, func(t *testing.T) {
			e := newCaseEngine(t, ec)
			a, client := tcpPair(t)
			b, backend := tcpPair(t)
			closeAtEnd(t, a, client, b, backend)
			writeErr, readDone := make(chan struct{}), make(chan struct{})
			hold := RelayOption(func(c *relayConfig) {
				c.beforeFinish = func(dir int, err error) {
					switch {
					case dir == dirBToA:
						close(readDone)
					case err != nil:
						close(writeErr)
						select {
						case <-readDone:
						case <-time.After(20 * time.Second):
						}
					}
				}
			})
			res := startRelay(e, context.Background(), a, b, hold)
			// The backend sends until every buffer on the way is full:
			// b -> a then waits for room in a, and reads b no more.
			chunk := make([]byte, 64<<10)
			for {
				backend.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
				if _, err := backend.Write(chunk); err != nil {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						t.Fatal(err)
					}
					break
				}
			}
			backend.SetLinger(0)
			backend.Close()
			if _, err := client.Write([]byte("request")); err != nil {
				t.Fatal(err)
			}
			select {
			case <-writeErr: // a -> b took the reset
			case <-time.After(20 * time.Second):
				t.Fatal("a -> b did not fail writing to the reset connection")
			}
			go io.Copy(io.Discard, client) // b -> a goes on, to b's EOF
			r := waitRelay(t, res)
			if !errors.Is(r.err, syscall.ECONNRESET) && !errors.Is(r.err, syscall.EPIPE) {
				t.Errorf("relay error %v; want the reset", r.err)
			}
			// A CloseWrite of a would have left it in FIN_WAIT1 or 2.
			if st := tcpState(t, a); st != tcpEstablished {
				t.Errorf("a's TCP state %d, not ESTABLISHED: the relay, which failed with %v, passed an EOF on to the client", st, r.err)
			}
		})
	}
}

// tcpEstablished is TCP_ESTABLISHED, a TCP_INFO state.
const tcpEstablished = 1

// tcpState is c's TCP_INFO state.
func tcpState(t *testing.T, c *net.TCPConn) uint8 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	rc.Control(func(s uintptr) { info, err = unix.GetsockoptTCPInfo(int(s), unix.IPPROTO_TCP, unix.TCP_INFO) })
	if err != nil {
		t.Fatal(err)
	}
	return info.State
}
