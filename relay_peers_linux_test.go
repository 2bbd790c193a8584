//go:build !pipes_portable

package pipes

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// adv25Guard turns a hang into a failure; no test waits for it.
const adv25Guard = 20 * time.Second

// adv25Cert is a self-signed certificate for 127.0.0.1, made once.
var adv25Cert = sync.OnceValues(func() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(25),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
})

// adv25TLS wraps the two ends of a connection in TLS: server on s,
// client on c.
func adv25TLS(t *testing.T, s, c net.Conn) (server, client *tls.Conn) {
	t.Helper()
	cert, err := adv25Cert()
	if err != nil {
		t.Fatal(err)
	}
	return tls.Server(s, &tls.Config{Certificates: []tls.Certificate{cert}}),
		tls.Client(c, &tls.Config{InsecureSkipVerify: true})
}

// adv25Peer is a TLS peer that completes its handshake before it
// half-closes (a *tls.Conn refuses CloseWrite before), as a client
// sending nothing does once it has connected.
type adv25Peer struct{ *tls.Conn }

func (p adv25Peer) CloseWrite() error {
	if err := p.Handshake(); err != nil {
		return err
	}
	return p.Conn.CloseWrite()
}

// adv25Embedded is a caller's connection type that embeds a
// *net.TCPConn: its descriptor (SyscallConn), deadlines and CloseWrite
// are the TCPConn's, promoted.
type adv25Embedded struct{ *net.TCPConn }

// adv25TLSEnd is a relay end that is a *tls.Conn over a connection of
// pair: its server side where server is set (the proxy's side of a
// client's connection), else its client side, with the other side as
// the peer.
func adv25TLSEnd(pair func(t *testing.T) (net.Conn, net.Conn), server bool) relayEnd {
	return func(t *testing.T) (io.ReadWriter, net.Conn) {
		a, b := pair(t)
		closeAtEnd(t, a, b)
		if server {
			s, c := adv25TLS(t, a, b)
			return s, adv25Peer{c}
		}
		s, c := adv25TLS(t, b, a)
		return c, adv25Peer{s}
	}
}

// adv25Ends are the relay ends of a TLS-terminating proxy: "tls-server"
// (the proxy's side of a client's TLS connection), "tls-client" (the
// proxy's TLS connection to a backend), and plain ones.
var adv25Ends = map[string]relayEnd{
	"tls-server":    adv25TLSEnd(func(t *testing.T) (net.Conn, net.Conn) { return tcpPair(t) }, true),
	"tls-client":    adv25TLSEnd(func(t *testing.T) (net.Conn, net.Conn) { return tcpPair(t) }, false),
	"tls-over-unix": adv25TLSEnd(func(t *testing.T) (net.Conn, net.Conn) { return unixPair(t) }, true),
	"embedded-tcp": func(t *testing.T) (io.ReadWriter, net.Conn) {
		a, b := tcpPair(t)
		closeAtEnd(t, a, b)
		return adv25Embedded{a}, b
	},
	"tcp":  relayEnds["tcp"],
	"unix": relayEnds["unix"],
}

// TestAdv25TLSRelay relays between TLS connections and plain ones, as a
// TLS-terminating proxy does, with each side sending nothing, a byte or
// a megabyte and then half-closing: every byte must arrive, each peer
// must read EOF after them (the relay's CloseWrite on a *tls.Conn sends
// its close_notify), and the relay must return nil with exact counts.
// A side that sends nothing half-closes at once, before the TLS side
// has finished its handshake (it starts later): the relay must pass
// that EOF on once the handshake is done, as an io.Copy proxy's
// CloseWrite after the copy would, not fail (a *tls.Conn refuses
// CloseWrite before its handshake) and cut the other direction short.
func TestAdv25TLSRelay(t *testing.T) {
	fdtest.Check(t)
	pairs := [][2]string{
		{"tls-server", "tcp"},
		{"tcp", "tls-client"},
		{"tls-server", "tls-client"},
		{"tls-over-unix", "unix"},
		{"embedded-tcp", "tls-client"},
	}
	sizes := [][2]int{{0, 0}, {1, 0}, {0, 1}, {64<<10 + 1, 1<<20 + 3}}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, pair := range pairs {
			for _, size := range sizes {
				t.Run(fmt.Sprintf("%s/%s<->%s/%d,%d", ec.name, pair[0], pair[1], size[0], size[1]), func(t *testing.T) {
					a, pa := adv25Ends[pair[0]](t)
					b, pb := adv25Ends[pair[1]](t)
					toB, toA := relayData(size[0], 1), relayData(size[1], 2)
					// The plain peers first: a TLS peer starts its
					// handshake later, after a plain peer sending
					// nothing has half-closed.
					var gotA, gotB <-chan peerResult
					_, aTLS := pa.(adv25Peer)
					if !aTLS {
						gotA = converse(pa, toB, len(toA))
					}
					_, bTLS := pb.(adv25Peer)
					if !bTLS {
						gotB = converse(pb, toA, len(toB))
					}
					res := startRelay(e, context.Background(), a, b)
					time.Sleep(20 * time.Millisecond)
					if aTLS {
						gotA = converse(pa, toB, len(toA))
					}
					if bTLS {
						gotB = converse(pb, toA, len(toB))
					}
					r, ok := recvBy(res, time.Now().Add(adv25Guard))
					if !ok {
						t.Fatal("the relay did not end")
					}
					if r.err != nil || r.aToB != int64(len(toB)) || r.bToA != int64(len(toA)) {
						// Its peers would wait for an EOF it did not pass on.
						pa.Close()
						pb.Close()
						t.Fatalf("Relay = (%d, %d, %v), want (%d, %d, nil)", r.aToB, r.bToA, r.err, len(toB), len(toA))
					}
					for _, c := range []struct {
						name string
						got  <-chan peerResult
						want []byte
					}{{"a's peer", gotA, toA}, {"b's peer", gotB, toB}} {
						got, ok := recvBy(c.got, time.Now().Add(adv25Guard))
						if !ok {
							t.Fatalf("%s did not read EOF", c.name)
						}
						if got.err != nil || got.n != int64(len(c.want)) || got.sum != sha256.Sum256(c.want) {
							t.Errorf("%s received %d bytes (hash match %v, err %v), want %d then EOF",
								c.name, got.n, got.sum == sha256.Sum256(c.want), got.err, len(c.want))
						}
					}
				})
			}
		}
	}
}

// adv25Short is a Writer without a descriptor that takes at most max
// bytes of each Write and reports no error: io.Copy fails with
// io.ErrShortWrite.
type adv25Short struct {
	buf bytes.Buffer
	max int
}

func (w *adv25Short) Write(p []byte) (int, error) {
	n := min(len(p), w.max)
	w.buf.Write(p[:n])
	return n, nil
}

// TestAdv25OddWriterAndReader: Copy, CopyContext and a relay direction
// from sources with descriptors (TCP, unix, pipe, file) and without (an
// io.Pipe whose writer fails, a Reader returning data with io.EOF, a
// *tls.Conn) into a Writer that writes short without an error, and into
// a plain buffer, must return what io.Copy returns for the same source
// and writer: the same count, an error matching its error's cause, and
// the same bytes written.
func TestAdv25OddWriterAndReader(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(200<<10 + 7)
	errPipe := errors.New("adv25: io.Pipe writer failed")
	sources := []struct {
		name string
		make func(t *testing.T) io.Reader
	}{
		{"tcp", func(t *testing.T) io.Reader {
			a, b := tcpPair(t)
			closeAtEnd(t, a, b)
			fdtest.WriteAndClose(b, data)
			return a
		}},
		{"unix", func(t *testing.T) io.Reader {
			a, b := unixPair(t)
			closeAtEnd(t, a, b)
			fdtest.WriteAndClose(b, data)
			return a
		}},
		{"pipe", func(t *testing.T) io.Reader {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			closeAtEnd(t, r, w)
			fdtest.WriteAndClose(w, data)
			return r
		}},
		{"file", func(t *testing.T) io.Reader { return fdtest.TempFile(t, data) }},
		{"io.Pipe failing", func(t *testing.T) io.Reader {
			r, w := io.Pipe()
			go func() {
				w.Write(data)
				w.CloseWithError(errPipe)
			}()
			closeAtEnd(t, r)
			return r
		}},
		{"data with EOF", func(t *testing.T) io.Reader {
			return iotest.DataErrReader(onlyReader{bytes.NewReader(data)})
		}},
		{"tls", func(t *testing.T) io.Reader {
			a, b := tcpPair(t)
			closeAtEnd(t, a, b)
			s, c := adv25TLS(t, a, b)
			go func() {
				c.Write(data)
				c.CloseWrite()
			}()
			return s
		}},
	}
	sinks := []struct {
		name string
		make func() (io.Writer, func() []byte)
	}{
		{"short", func() (io.Writer, func() []byte) {
			w := &adv25Short{max: 1000}
			return w, w.buf.Bytes
		}},
		{"buffer", func() (io.Writer, func() []byte) {
			var b bytes.Buffer
			return onlyWriter{&b}, b.Bytes
		}},
	}
	e := newTestEngine(t)
	for _, src := range sources {
		for _, sink := range sinks {
			w, got := sink.make()
			wantN, wantErr := io.Copy(w, src.make(t))
			want := bytes.Clone(got())
			for _, how := range []string{"Copy", "CopyContext", "Relay"} {
				t.Run(fmt.Sprintf("%s/%s/%s", src.name, sink.name, how), func(t *testing.T) {
					w, got := sink.make()
					r := src.make(t)
					var n int64
					var err error
					fdtest.Within(t, adv25Guard, func() {
						switch how {
						case "Copy":
							n, err = e.Copy(w, r)
						case "CopyContext":
							ctx, cancel := context.WithCancel(context.Background())
							defer cancel()
							n, err = e.CopyContext(ctx, w, r)
						case "Relay":
							// b -> a carries the source: a reads EOF at once.
							_, n, err = e.Relay(context.Background(), readEOFWriter{w}, readOnlyEnd{r})
						}
					})
					if n != wantN || !bytes.Equal(got(), want) || (err == nil) != (wantErr == nil) ||
						wantErr != nil && !errors.Is(err, adv25Cause(wantErr)) {
						t.Errorf("%s = (%d, %v), %d bytes written; io.Copy = (%d, %v), %d bytes",
							how, n, err, len(got()), wantN, wantErr, len(want))
					}
				})
			}
		}
	}
}

// adv25Cause is the innermost error err wraps: what io.Copy's error
// says happened, without the addresses a *net.OpError adds.
func adv25Cause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// adv25Stalled is a TCP relay whose b's peer never reads: a's peer
// sends more than the buffers between hold, so the a->b direction waits
// on a full b (with bytes in a pool pipe, on the kernel path).
type adv25Stalled struct {
	a, b, pa, pb *net.TCPConn
	data         []byte
}

func adv25NewStalled(t *testing.T) *adv25Stalled {
	s := &adv25Stalled{data: fdtest.Random(8 << 20)}
	s.a, s.pa = tcpPair(t)
	s.b, s.pb = tcpPair(t)
	closeAtEnd(t, s.a, s.pa, s.b, s.pb)
	smallBuffers(t, 16<<10, s.b, s.pb)
	go func() {
		// Ends when the test closes pa, if the relay left bytes.
		s.pa.Write(s.data)
		s.pa.CloseWrite()
	}()
	return s
}

// check closes the relay's b (which it had stopped using) and has b's
// peer read what b holds: exactly the aToB bytes the relay counted, the
// first aToB bytes of the data.
func (s *adv25Stalled) check(t *testing.T, aToB int64) {
	t.Helper()
	s.b.Close()
	s.pb.SetReadDeadline(time.Now().Add(adv25Guard))
	got, err := io.ReadAll(s.pb)
	if err != nil || int64(len(got)) != aToB || !bytes.Equal(got, s.data[:len(got)]) {
		t.Errorf("b's peer read %d bytes (%v, prefix of the data: %v); the relay counted %d",
			len(got), err, bytes.Equal(got, s.data[:min(len(got), len(s.data))]), aToB)
	}
}

// TestAdv25RelayStalledCounts: a relay whose a->b direction waits on a
// b whose peer never reads is ended by a cancel, Engine.Close, the idle
// timeout or the half-close timeout (b's peer half-closed at once). It
// must end, with an error matching the cause, and count exactly the
// bytes b took: those in a pool pipe (or, with the pool's one pipe held
// by another stalled relay, in the userspace buffer) when it ended are
// not delivered, and must not be counted.
func TestAdv25RelayStalledCounts(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		for _, maxPipes := range []int{0, 1} {
			for _, how := range []string{"cancel", "close", "idle", "half-close"} {
				t.Run(fmt.Sprintf("%s/pipes=%d/%s", ec.name, maxPipes, how), func(t *testing.T) {
					opts := ec.opts
					if maxPipes > 0 {
						opts = append(opts[:len(opts):len(opts)], WithMaxPipes(maxPipes))
					}
					e, err := NewEngine(opts...)
					if err != nil {
						t.Fatal(err)
					}
					defer e.Close()
					if maxPipes > 0 {
						// Another stalled relay holds the pool's pipe:
						// this one goes through the userspace buffer.
						o := adv25NewStalled(t)
						ctx, cancel := context.WithCancel(context.Background())
						defer cancel()
						var p atomic.Int64
						if r, ended := adv25AwaitStall(t, &p, startRelay(e, ctx, o.a, o.b, RelayProgress(&p, nil))); ended {
							t.Fatalf("the other relay ended: (%d, %d, %v)", r.aToB, r.bToA, r.err)
						}
						if st := e.Stats(); st.Pipes != maxPipes {
							t.Fatalf("%d pipes alive, want the other relay's %d", st.Pipes, maxPipes)
						}
					}
					s := adv25NewStalled(t)
					var relayOpts []RelayOption
					var progress atomic.Int64
					relayOpts = append(relayOpts, RelayProgress(&progress, nil))
					switch how {
					case "idle":
						relayOpts = append(relayOpts, RelayIdleTimeout(200*time.Millisecond))
					case "half-close":
						s.pb.CloseWrite()
						relayOpts = append(relayOpts, RelayHalfCloseTimeout(200*time.Millisecond))
					}
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					res := startRelay(e, ctx, s.a, s.b, relayOpts...)
					var want error
					if r, ended := adv25AwaitStall(t, &progress, res); ended {
						// A timeout of its own may end it before the
						// stall is seen.
						if how != "idle" && how != "half-close" {
							t.Fatalf("the relay ended before it was stopped: (%d, %d, %v)", r.aToB, r.bToA, r.err)
						}
						if !errors.Is(r.err, os.ErrDeadlineExceeded) {
							t.Errorf("Relay = (%d, %d, %v), want os.ErrDeadlineExceeded", r.aToB, r.bToA, r.err)
						}
						s.check(t, r.aToB)
						return
					}
					switch how {
					case "cancel":
						cancel()
						want = context.Canceled
					case "close":
						go e.Close()
						want = ErrClosed
					default:
						want = os.ErrDeadlineExceeded
					}
					r, ok := recvBy(res, time.Now().Add(adv25Guard))
					if !ok {
						t.Fatal("the relay did not end")
					}
					if !errors.Is(r.err, want) || r.bToA != 0 {
						t.Errorf("Relay = (%d, %d, %v), want (n, 0, an error matching %v)", r.aToB, r.bToA, r.err, want)
					}
					s.check(t, r.aToB)
				})
			}
		}
	}
}

// adv25AwaitStall waits until the relay behind res has delivered a byte
// and then no more over a few polls (a precondition, not what a test
// asserts), or until it ends (ended, with its result).
func adv25AwaitStall(t *testing.T, progress *atomic.Int64, res <-chan relayResult) (r relayResult, ended bool) {
	t.Helper()
	deadline := time.After(adv25Guard)
	var last int64 = -1
	for same := 0; same < 5; {
		select {
		case r := <-res:
			return r, true
		case <-deadline:
			t.Fatal("the relay never stalled")
		case <-time.After(20 * time.Millisecond):
		}
		if n := progress.Load(); n > 0 && n == last {
			same++
		} else {
			same, last = 0, n
		}
	}
	return relayResult{}, false
}

// adv25Hostile is a relay whose peers are hostile: started on e, it
// runs until its peers are released, unless ends (it fails by itself).
type adv25Hostile struct {
	name  string
	ends  bool // a reset: it ends with ECONNRESET or EPIPE by itself
	start func(t *testing.T) (a, b io.ReadWriter, stalled func(progress *atomic.Int64, res <-chan relayResult))
}

// adv25Silent is a hostile relay behind a TLS-terminating proxy whose
// client connected and never starts its handshake, while b's peer sends
// banner (a server-first protocol's greeting, as SMTP's) and
// half-closes: both directions wait for the handshake (b -> a in its
// Write of the banner, or in passing b's EOF on).
func adv25Silent(banner string) func(t *testing.T) (io.ReadWriter, io.ReadWriter, func(*atomic.Int64, <-chan relayResult)) {
	return func(t *testing.T) (io.ReadWriter, io.ReadWriter, func(*atomic.Int64, <-chan relayResult)) {
		a, pa := tcpPair(t)
		b, pb := tcpPair(t)
		closeAtEnd(t, a, pa, b, pb)
		s, _ := adv25TLS(t, a, pa)
		go func() {
			pb.Write([]byte(banner))
			pb.CloseWrite()
		}()
		return s, b, func(*atomic.Int64, <-chan relayResult) { time.Sleep(50 * time.Millisecond) }
	}
}

var adv25Hostiles = []adv25Hostile{
	{name: "b never reads", start: func(t *testing.T) (io.ReadWriter, io.ReadWriter, func(*atomic.Int64, <-chan relayResult)) {
		s := adv25NewStalled(t)
		return s.a, s.b, func(p *atomic.Int64, res <-chan relayResult) { adv25AwaitStall(t, p, res) }
	}},
	{name: "b half-closed, never reads", start: func(t *testing.T) (io.ReadWriter, io.ReadWriter, func(*atomic.Int64, <-chan relayResult)) {
		s := adv25NewStalled(t)
		s.pb.CloseWrite()
		return s.a, s.b, func(p *atomic.Int64, res <-chan relayResult) { adv25AwaitStall(t, p, res) }
	}},
	{name: "a trickles", start: func(t *testing.T) (io.ReadWriter, io.ReadWriter, func(*atomic.Int64, <-chan relayResult)) {
		a, pa := tcpPair(t)
		b, pb := tcpPair(t)
		closeAtEnd(t, a, pa, b, pb)
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if _, err := pa.Write([]byte{'.'}); err != nil {
					return
				}
			}
		}()
		t.Cleanup(func() { close(stop); <-done })
		go io.Copy(io.Discard, pb)
		return a, b, func(p *atomic.Int64, res <-chan relayResult) {
			deadline := time.Now().Add(adv25Guard)
			for p.Load() == 0 {
				if time.Now().After(deadline) {
					t.Fatal("the trickling relay moved no byte")
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}},
	{name: "TLS client never handshakes, b sends a banner and EOF", start: adv25Silent("220 ready\r\n")},
	{name: "TLS client never handshakes, b sends EOF", start: adv25Silent("")},
	{name: "b resets", ends: true, start: func(t *testing.T) (io.ReadWriter, io.ReadWriter, func(*atomic.Int64, <-chan relayResult)) {
		s := adv25NewStalled(t)
		return s.a, s.b, func(p *atomic.Int64, res <-chan relayResult) {
			adv25AwaitStall(t, p, res)
			s.pb.SetLinger(0)
			s.pb.Close()
		}
	}},
}

// TestAdv25RelayHostilePeers runs relays whose peers never read (a zero
// window, with or without their half-close), trickle a byte per 100 ms,
// or reset mid-transfer, on one engine (default, and one pool pipe),
// and then healthy relays of 1 MiB each way: the healthy ones must
// complete with every byte while the hostile ones still run (but the
// resets, which must fail with the reset). A cancel must then end half
// of the hostile ones (context.Canceled) and Engine.Close the rest
// (ErrClosed), leaving no descriptor behind.
func TestAdv25RelayHostilePeers(t *testing.T) {
	fdtest.Check(t)
	for _, maxPipes := range []int{0, 1} {
		t.Run(fmt.Sprintf("pipes=%d", maxPipes), func(t *testing.T) {
			var opts []Option
			if maxPipes > 0 {
				opts = append(opts, WithMaxPipes(maxPipes))
			}
			e, err := NewEngine(opts...)
			if err != nil {
				t.Fatal(err)
			}
			closed := false
			defer func() {
				if !closed {
					e.Close()
				}
			}()
			type hostile struct {
				h      adv25Hostile
				res    <-chan relayResult
				cancel func()
				byCtx  bool
			}
			var hostiles []hostile
			for i := range 3 {
				for _, h := range adv25Hostiles {
					a, b, stalled := h.start(t)
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					var progress atomic.Int64
					res := startRelay(e, ctx, a, b, RelayProgress(&progress, nil))
					stalled(&progress, res)
					hostiles = append(hostiles, hostile{h, res, cancel, i%2 == 0})
				}
			}
			type healthy struct {
				name       string
				res        <-chan relayResult
				gotA, gotB <-chan peerResult
				toA, toB   []byte
			}
			var healthies []healthy
			for _, pair := range [][2]string{{"tcp", "tcp"}, {"unix", "tcp"}, {"tcp", "unix"}} {
				for range 2 {
					a, pa := relayEnds[pair[0]](t)
					b, pb := relayEnds[pair[1]](t)
					hl := healthy{name: pair[0] + "<->" + pair[1], toB: relayData(1<<20, 3), toA: relayData(1<<20+1, 4)}
					hl.gotA = converse(pa, hl.toB, len(hl.toA))
					hl.gotB = converse(pb, hl.toA, len(hl.toB))
					hl.res = startRelay(e, context.Background(), a, b)
					healthies = append(healthies, hl)
				}
			}
			deadline := time.Now().Add(adv25Guard)
			for _, hl := range healthies {
				r, ok := recvBy(hl.res, deadline)
				if !ok {
					t.Fatalf("healthy relay %s did not end next to the hostile ones", hl.name)
				}
				if r.err != nil || r.aToB != int64(len(hl.toB)) || r.bToA != int64(len(hl.toA)) {
					t.Errorf("healthy relay %s = (%d, %d, %v), want (%d, %d, nil)", hl.name, r.aToB, r.bToA, r.err, len(hl.toB), len(hl.toA))
				}
				for _, c := range []struct {
					got  <-chan peerResult
					want []byte
				}{{hl.gotA, hl.toA}, {hl.gotB, hl.toB}} {
					got, ok := recvBy(c.got, deadline)
					if !ok || got.err != nil || got.n != int64(len(c.want)) || got.sum != sha256.Sum256(c.want) {
						t.Errorf("healthy relay %s: a peer received %d bytes (%v, ok %v), want %d", hl.name, got.n, got.err, ok, len(c.want))
					}
				}
			}
			for i, h := range hostiles {
				if h.h.ends {
					r, ok := recvBy(h.res, deadline)
					switch {
					case !ok:
						t.Errorf("hostile %d (%s): did not end after the reset", i, h.h.name)
					case !errors.Is(r.err, syscall.ECONNRESET) && !errors.Is(r.err, syscall.EPIPE):
						t.Errorf("hostile %d (%s) = (%d, %d, %v), want ECONNRESET or EPIPE", i, h.h.name, r.aToB, r.bToA, r.err)
					}
					continue
				}
				select {
				case r := <-h.res:
					t.Errorf("hostile %d (%s) ended before it was stopped: (%d, %d, %v)", i, h.h.name, r.aToB, r.bToA, r.err)
					hostiles[i].res = nil
				default:
				}
				if h.byCtx {
					h.cancel()
				}
			}
			for i, h := range hostiles {
				if h.h.ends || !h.byCtx || h.res == nil {
					continue
				}
				r, ok := recvBy(h.res, deadline)
				if !ok {
					t.Fatalf("hostile %d (%s): did not end after its cancel", i, h.h.name)
				}
				if !errors.Is(r.err, context.Canceled) {
					t.Errorf("hostile %d (%s) after its cancel = (%d, %d, %v), want context.Canceled", i, h.h.name, r.aToB, r.bToA, r.err)
				}
			}
			fdtest.Within(t, adv25Guard, func() { e.Close() })
			closed = true
			for i, h := range hostiles {
				if h.h.ends || h.byCtx || h.res == nil {
					continue
				}
				r, ok := recvBy(h.res, deadline)
				if !ok {
					t.Fatalf("hostile %d (%s): did not end after Close", i, h.h.name)
				}
				if !errors.Is(r.err, ErrClosed) {
					t.Errorf("hostile %d (%s) after Close = (%d, %d, %v), want ErrClosed", i, h.h.name, r.aToB, r.bToA, r.err)
				}
			}
		})
	}
}

// adv25Buffered is an end behind a *bufio.ReadWriter over a TCP
// connection (as http.Hijacker returns, whose buffered reads a CONNECT
// proxy must not lose), and the connection's peer.
func adv25Buffered(t *testing.T) (*bufio.ReadWriter, *net.TCPConn) {
	c, peer := tcpPair(t)
	closeAtEnd(t, c, peer)
	return bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c)), peer
}

// TestAdv25BufferedWriterEnd: io.Copy into a *bufio.ReadWriter (or
// *bufio.Writer) whose buffer is empty hands the copy to its ReadFrom,
// which passes it to the connection's own: every byte reaches the peer
// as it is copied, with no Flush. A copy of the engine, and a relay
// direction, must deliver them too: a reply of a few bytes left in the
// buffer never reaches the peer of a relay (nothing flushes it while
// the relay runs), and the peer waits for it.
func TestAdv25BufferedWriterEnd(t *testing.T) {
	msg := []byte("220 hello\r\n")
	t.Run("io.Copy", func(t *testing.T) {
		// What the engine must match. Not under fdtest.Check: io.Copy
		// splices, through a pipe of Go's that the GC closes.
		brw, peer := adv25Buffered(t)
		s, p := tcpPair(t)
		closeAtEnd(t, s, p)
		fdtest.WriteAndClose(p, msg)
		n, err := io.Copy(brw, s)
		adv25ReadMsg(t, peer, msg, n, err)
	})
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, how := range []string{"Copy", "CopyContext", "CopyAsync"} {
			for _, srcKind := range []string{"tcp", "reader"} {
				t.Run(fmt.Sprintf("%s/%s/%s", ec.name, how, srcKind), func(t *testing.T) {
					brw, peer := adv25Buffered(t)
					var src io.Reader = onlyReader{bytes.NewReader(msg)}
					if srcKind == "tcp" {
						s, p := tcpPair(t)
						closeAtEnd(t, s, p)
						fdtest.WriteAndClose(p, msg)
						src = s
					}
					var n int64
					var err error
					switch how {
					case "Copy":
						n, err = e.Copy(brw, src)
					case "CopyContext":
						ctx, cancel := context.WithCancel(context.Background())
						defer cancel()
						n, err = e.CopyContext(ctx, brw, src)
					case "CopyAsync":
						n, err = e.CopyAsync(context.Background(), brw, src).Wait()
					}
					adv25ReadMsg(t, peer, msg, n, err)
				})
			}
		}
		t.Run(ec.name+"/Relay", func(t *testing.T) {
			// b's peer (a server-first protocol) greets; the client,
			// a's peer, waits for the greeting before it says anything.
			brw, pa := adv25Buffered(t)
			b, pb := tcpPair(t)
			closeAtEnd(t, b, pb)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			res := startRelay(e, ctx, brw, b)
			if _, err := pb.Write(msg); err != nil {
				t.Fatal(err)
			}
			pa.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(pa, got); err != nil || !bytes.Equal(got, msg) {
				t.Errorf("the client read %q, %v; want the greeting %q", got, err, msg)
			}
			cancel()
			// A *bufio.ReadWriter has no deadlines: the relay's read
			// of it ends when its peer closes.
			pa.Close()
			if _, ok := recvBy(res, time.Now().Add(adv25Guard)); !ok {
				t.Fatal("the relay did not end after its cancel")
			}
		})
	}
}

// adv25ReadMsg checks that a copy of msg returned (len(msg), nil) and
// that peer can read msg now, with no Flush of the writer.
func adv25ReadMsg(t *testing.T, peer net.Conn, msg []byte, n int64, err error) {
	t.Helper()
	if n != int64(len(msg)) || err != nil {
		t.Errorf("copy = (%d, %v), want (%d, nil)", n, err, len(msg))
	}
	peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(peer, got); err != nil || !bytes.Equal(got, msg) {
		t.Errorf("the peer read %q, %v; want %q, as io.Copy delivers it", got, err, msg)
	}
}

// TestAdv25TLSHalfCloseBeforeHandshake: b's peer half-closes at once
// and a's client connected and never starts its TLS handshake. The
// relay waits for the handshake to pass b's EOF on; its half-close
// timeout, a cancel or Engine.Close must end that wait, with the
// matching error, and leave no goroutine or descriptor behind.
func TestAdv25TLSHalfCloseBeforeHandshake(t *testing.T) {
	fdtest.Check(t)
	for _, how := range []string{"half-close", "cancel", "close"} {
		t.Run(how, func(t *testing.T) {
			e, err := NewEngine()
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			a, b, _ := adv25Silent("")(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var opts []RelayOption
			if how == "half-close" {
				opts = append(opts, RelayHalfCloseTimeout(100*time.Millisecond))
			}
			res := startRelay(e, ctx, a, b, opts...)
			time.Sleep(50 * time.Millisecond)
			r, ok := endRelay(e, how, cancel, res)
			if !ok {
				t.Fatal("the relay did not end")
			}
			want := map[string]error{"cancel": context.Canceled, "close": ErrClosed, "half-close": os.ErrDeadlineExceeded}[how]
			if !errors.Is(r.err, want) || r.aToB != 0 || r.bToA != 0 {
				t.Errorf("Relay = (%d, %d, %v), want (0, 0, an error matching %v)", r.aToB, r.bToA, r.err, want)
			}
		})
	}
}

// TestAdv25FanOutTLSDestinations: a FanOut (kernel and userspace
// sources) to TLS connections, which have no descriptor and are written
// by their Write, next to plain sockets: one TLS peer never reads, one
// plain peer is gone (closed) and one resets after a byte. With
// FanOutEvictAfter the stalled TLS destination is evicted (its Write
// woken by a write deadline on the *tls.Conn), the gone ones fail with
// EPIPE or ECONNRESET, and the healthy TLS and plain destinations
// receive every byte.
func TestAdv25FanOutTLSDestinations(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(8 << 20)
	e := newTestEngine(t)
	for _, srcKind := range []string{"file", "reader"} {
		t.Run(srcKind, func(t *testing.T) {
			var src io.Reader = onlyReader{bytes.NewReader(data)}
			if srcKind == "file" {
				src = fdtest.TempFile(t, data)
			}
			type sink struct {
				w    io.Writer
				got  chan []byte // nil: not read to the end
				want string      // "all", "evicted", "gone"
			}
			drain := func(r io.Reader) chan []byte {
				ch := make(chan []byte, 1)
				go func() {
					b, _ := io.ReadAll(r)
					ch <- b
				}()
				return ch
			}
			var sinks []sink
			tlsSink := func(read bool) sink {
				a, b := tcpPair(t)
				closeAtEnd(t, a, b)
				if !read {
					// Not the healthy one's: TLS records over
					// 16 KiB buffers wait on delayed ACKs, and 8 MiB
					// would take half a minute.
					smallBuffers(t, 16<<10, a, b)
				}
				s, c := adv25TLS(t, b, a)
				if !read {
					// Completes the handshake, and reads nothing after.
					go s.Handshake()
					return sink{w: c, want: "evicted"}
				}
				return sink{w: c, got: drain(s), want: "all"}
			}
			sinks = append(sinks, tlsSink(true), tlsSink(false))
			a, b := tcpPair(t)
			closeAtEnd(t, a, b)
			sinks = append(sinks, sink{w: a, got: drain(b), want: "all"})
			u, pu := unixPair(t)
			closeAtEnd(t, u)
			pu.Close()
			sinks = append(sinks, sink{w: u, want: "gone"})
			r, pr := tcpPair(t)
			closeAtEnd(t, r, pr)
			go func() {
				io.CopyN(io.Discard, pr, 1)
				pr.SetLinger(0)
				pr.Close()
			}()
			sinks = append(sinks, sink{w: r, want: "gone"})
			var ws []io.Writer
			for _, s := range sinks {
				ws = append(ws, s.w)
			}
			var res []Result
			fdtest.Within(t, adv25Guard, func() {
				res = e.FanOut(context.Background(), src, ws, FanOutEvictAfter(time.Second), FanOutBuffer(256<<10))
			})
			for i, s := range sinks {
				r := res[i]
				switch s.want {
				case "all":
					if r.Err != nil || r.Written != int64(len(data)) {
						t.Errorf("destination %d (%T): %+v, want all %d bytes", i, s.w, r, len(data))
					}
					if c, ok := s.w.(*tls.Conn); ok {
						c.CloseWrite()
					} else {
						s.w.(*net.TCPConn).CloseWrite()
					}
					got, ok := recvBy(s.got, time.Now().Add(adv25Guard))
					if !ok || !bytes.Equal(got, data) {
						t.Errorf("destination %d (%T): its peer read %d bytes (ok %v), want the %d sent", i, s.w, len(got), ok, len(data))
					}
				case "evicted":
					if !errors.Is(r.Err, ErrEvicted) || r.Written >= int64(len(data)) {
						t.Errorf("destination %d (stalled TLS): %+v, want ErrEvicted", i, r)
					}
				case "gone":
					if !errors.Is(r.Err, syscall.EPIPE) && !errors.Is(r.Err, syscall.ECONNRESET) {
						t.Errorf("destination %d (%T, peer gone): %+v, want EPIPE or ECONNRESET", i, s.w, r)
					}
				}
			}
		})
	}
}
