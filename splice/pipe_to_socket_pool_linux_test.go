//go:build linux

package splice

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

// Adversarial tests of the pipe -> socket path through a pool pipe
// (throughPipe): a copy from a pipe or FIFO into a stream socket with a
// pool fills a pool pipe from the source pipe and drains it into the
// socket.

// adv22Pipe returns a pipe of kind "pipe" (os.Pipe: non-blocking, on
// the netpoller), "fifo" (both ends non-blocking) or "blocking" (pipe2
// without O_NONBLOCK: *os.Files the netpoller does not watch). The read
// end is closed first at cleanup, so that a writer blocked on a full
// pipe fails (EPIPE) rather than hang.
func adv22Pipe(t testing.TB, kind string) (r, w *os.File) {
	t.Helper()
	switch kind {
	case "pipe":
		var err error
		r, w, err = os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
	case "fifo":
		r, w = fifo(t)
	case "blocking":
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		r = os.NewFile(uintptr(p[0]), "pipe (blocking, read end)")
		w = os.NewFile(uintptr(p[1]), "pipe (blocking, write end)")
	default:
		t.Fatalf("unknown pipe kind %q", kind)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

var adv22PipeKinds = []string{"pipe", "fifo", "blocking"}

// adv22Dst returns the copy's end of a stream socket pair of network
// "tcp" or "unix", and its peer. blocking makes the copy's end a
// blocking-mode *os.File the netpoller does not watch (a dup of the
// socket, O_NONBLOCK cleared), as os.NewFile of an inherited socket is.
func adv22Dst(t testing.TB, network string, blocking bool) (end syscall.Conn, peer net.Conn) {
	t.Helper()
	a, b := connPair(t, network)
	if !blocking {
		return a.(syscall.Conn), b
	}
	var dup int
	var derr error
	rc, err := a.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
	if derr != nil {
		t.Fatal(derr)
	}
	if err := unix.SetNonblock(dup, false); err != nil {
		t.Fatal(err)
	}
	a.Close() // the dup keeps the socket open
	f := os.NewFile(uintptr(dup), network+" socket (blocking)")
	t.Cleanup(func() { f.Close() })
	return f, b
}

// adv22Lost returns the bytes err reports undelivered.
func adv22Lost(err error) int64 {
	var u *UndeliveredError
	if errors.As(err, &u) {
		return u.N
	}
	return 0
}

// adv22Account checks that every byte of data is accounted for: n
// delivered (and the peer got exactly data[:n], where peer is not nil),
// lost reported undelivered, and the rest still in the source, in order.
func adv22Account(t *testing.T, data []byte, n int64, err error, rest, peer []byte) {
	t.Helper()
	lost := adv22Lost(err)
	total := int64(len(data))
	if n < 0 || lost < 0 || n+lost+int64(len(rest)) != total || !bytes.Equal(rest, data[n+lost:]) {
		t.Fatalf("Copy = %d, %v (%d undelivered); the source holds %d more: %d of %d bytes unaccounted for",
			n, err, lost, len(rest), total-n-lost-int64(len(rest)), total)
	}
	if peer != nil && !bytes.Equal(peer, data[:n]) {
		t.Fatalf("Copy = %d, %v; the peer got %d bytes (equal to the source's first %d: %v)",
			n, err, len(peer), min(int64(len(peer)), n), bytes.HasPrefix(data, peer))
	}
}

// adv22Idle waits (under the caller's guard) until pool has no pipe in
// use.
func adv22Idle(pool *Pool) {
	for pool.Stats().InUse != 0 {
		time.Sleep(time.Millisecond)
	}
}

// TestAdv22PipeToSocketSizes: a pipe -> socket copy with a pool delivers
// every byte, in order, for sizes around the page, the pool buffer and
// the pool pipe, from every kind of pipe (non-blocking, FIFO, blocking)
// into TCP and unix sockets (non-blocking or blocking), with pools of
// big and one-page pipes, and gives every pool pipe back.
func TestAdv22PipeToSocketSizes(t *testing.T) {
	fdtest.Check(t)
	sizes := []int{0, 1, 4095, 4096, 64<<10 - 1, 64 << 10, 64<<10 + 1, 1<<20 - 1, 1 << 20, 1<<20 + 1}
	pools := []struct {
		name       string
		size, max  int
		sizesLimit int
	}{
		{"pool-1MiB", 0, 2, 1 << 30},
		{"pool-page", 4096, 1, 1 << 30},
	}
	for _, kind := range adv22PipeKinds {
		for _, network := range []string{"tcp", "unix"} {
			for _, blockingDst := range []bool{false, true} {
				for _, pc := range pools {
					name := fmt.Sprintf("%s/%s/blocking-dst=%v/%s", kind, network, blockingDst, pc.name)
					t.Run(name, func(t *testing.T) {
						pool := NewPool(pc.size, pc.max)
						defer pool.Close()
						for _, size := range sizes {
							adv22CopyAll(t, pool, kind, network, blockingDst, size)
						}
					})
				}
			}
		}
	}
	t.Run("64MiB", func(t *testing.T) {
		pool := NewPool(0, 1)
		defer pool.Close()
		adv22CopyAll(t, pool, "pipe", "tcp", false, 64<<20)
	})
}

func adv22CopyAll(t *testing.T, pool *Pool, kind, network string, blockingDst bool, size int) {
	t.Helper()
	data := fdtest.Random(size)
	r, w := adv22Pipe(t, kind)
	go func() {
		w.Write(data)
		w.Close()
	}()
	end, peer := adv22Dst(t, network, blockingDst)
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(peer); got <- b }()
	var n int64
	var err error
	fdtest.Within(t, 20*time.Second, func() {
		n, _, err = Copy(context.Background(), endOf(t, end, false), endOf(t, r, true), -1, pool)
	})
	if err != nil || n != int64(size) {
		t.Fatalf("size %d: Copy = %d, %v", size, n, err)
	}
	end.(io.Closer).Close()
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("size %d: the peer got %d bytes, not the source's", size, len(b))
	}
	if st := pool.Stats(); st.InUse != 0 {
		t.Fatalf("size %d: pool after the copy: %+v", size, st)
	}
}

// TestAdv22IdleEnds: a pipe -> socket copy whose source has no input
// (its writer open and quiet) holds no pool pipe while it waits, and
// ends promptly, with every byte written before delivered, when ctx is
// cancelled (ctx's error) or the source is closed from another goroutine
// (an error matching os.ErrClosed, as io.Copy's read of a closed
// *os.File): from a non-blocking pipe, a FIFO, and a blocking pipe
// (which the copy waits on in poll(2) slices), into a non-blocking or
// blocking socket.
func TestAdv22IdleEnds(t *testing.T) {
	fdtest.Check(t)
	for _, end := range []struct {
		name string
		want error
	}{{"cancel", context.Canceled}, {"close-src", os.ErrClosed}} {
		for _, kind := range adv22PipeKinds {
			for _, blockingDst := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/blocking-dst=%v", end.name, kind, blockingDst), func(t *testing.T) {
					pool := NewPool(0, 1)
					defer pool.Close()
					r, w := adv22Pipe(t, kind)
					hello := fdtest.Random(100 << 10)
					go w.Write(hello)
					dst, peer := adv22Dst(t, "tcp", blockingDst)
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					res := goCopy(ctx, endOf(t, dst, false), endOf(t, r, true), -1, pool)
					var rr copyResult
					fdtest.Within(t, 20*time.Second, func() {
						got := make([]byte, len(hello))
						if _, err := io.ReadFull(peer, got); err != nil || !bytes.Equal(got, hello) {
							t.Errorf("the peer got %v, not the source's bytes", err)
						}
						adv22Idle(pool) // the copy waits for input: no pipe held
						if end.name == "cancel" {
							cancel()
						} else {
							r.Close()
						}
						rr = <-res
					})
					if !errors.Is(rr.err, end.want) || rr.n != int64(len(hello)) {
						t.Fatalf("Copy = %d, %v; want %d, %v", rr.n, rr.err, len(hello), end.want)
					}
					if st := pool.Stats(); st.InUse != 0 {
						t.Fatalf("pool after the copy: %+v", st)
					}
				})
			}
		}
	}
}

// TestAdv22StalledPeerEnds: a pipe -> socket copy whose peer reads
// nothing, so that the pool pipe holds bytes the socket has no room for,
// is ended by ctx (cancel), by a Close of dst from another goroutine, or
// by its peer's reset; every byte the writer put in the source is then
// delivered (the peer reads exactly those, where it still can), reported
// undelivered, or still in the source, and the error is the one io.Copy
// would give (ctx's, net.ErrClosed / os.ErrClosed, ECONNRESET or EPIPE).
// Every kind of source pipe, with and without a limit, into TCP and unix
// sockets, non-blocking and blocking.
func TestAdv22StalledPeerEnds(t *testing.T) {
	fdtest.Check(t)
	const total = 16 << 20
	for _, kind := range adv22PipeKinds {
		for _, network := range []string{"tcp", "unix"} {
			for _, blockingDst := range []bool{false, true} {
				for _, how := range []string{"cancel", "close-dst", "reset"} {
					if how == "reset" && network == "unix" {
						continue
					}
					for _, limit := range []int64{-1, 12<<20 + 7} {
						name := fmt.Sprintf("%s/%s/blocking-dst=%v/%s/limit=%d", kind, network, blockingDst, how, limit)
						t.Run(name, func(t *testing.T) {
							adv22Stalled(t, kind, network, blockingDst, how, limit, total)
						})
					}
				}
			}
		}
	}
}

func adv22Stalled(t *testing.T, kind, network string, blockingDst bool, how string, limit int64, total int) {
	pool := NewPool(0, 1)
	defer pool.Close()
	data := fdtest.Random(total)
	r, w := adv22Pipe(t, kind)
	fed := fdtest.WriteAndClose(w, data)
	end, peer := adv22Dst(t, network, blockingDst)
	if tc, ok := peer.(*net.TCPConn); ok && how == "reset" {
		tc.SetLinger(0)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	meter := new(countMeter)
	dstEnd := endOf(t, end, false)
	dstEnd.Meter = meter
	res := goCopy(ctx, dstEnd, endOf(t, r, true), limit, pool)
	var rr copyResult
	fdtest.Within(t, 20*time.Second, func() {
		// Wait until the socket is full: the copy is stuck in a drain
		// with bytes in the pool pipe (or a buffer round's buffer).
		waitStuck(meter)
		switch how {
		case "cancel":
			cancel()
		case "close-dst":
			end.(io.Closer).Close()
		case "reset":
			peer.Close()
		}
		rr = <-res
	})
	n, err := rr.n, rr.err
	switch {
	case how == "cancel" && !errors.Is(err, context.Canceled):
		t.Fatalf("Copy = %d, %v; want context.Canceled", n, err)
	case how == "close-dst" && blockingDst && !errors.Is(err, os.ErrClosed):
		t.Fatalf("Copy = %d, %v; want os.ErrClosed", n, err)
	case how == "close-dst" && !blockingDst && !errors.Is(err, net.ErrClosed):
		t.Fatalf("Copy = %d, %v; want net.ErrClosed", n, err)
	case how == "reset" && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE):
		t.Fatalf("Copy = %d, %v; want ECONNRESET or EPIPE", n, err)
	}
	if n != meter.load() {
		t.Fatalf("Copy = %d, %v; the Meter counted %d", n, err, meter.load())
	}
	var peerGot []byte
	if how != "reset" {
		end.(io.Closer).Close()
		peerGot, _ = io.ReadAll(peer)
	}
	rest, rerr := io.ReadAll(r)
	<-fed
	if rerr != nil {
		t.Fatal(rerr)
	}
	adv22Account(t, data, n, err, rest, peerGot)
	if limit >= 0 && n+adv22Lost(err) > limit {
		t.Fatalf("Copy = %d, %v: read %d bytes past its limit %d", n, err, n+adv22Lost(err)-limit, limit)
	}
	if st := pool.Stats(); st.InUse != 0 {
		t.Fatalf("pool after the copy: %+v", st)
	}
}

// countMeter is a Meter safe to read while the copy runs.
type countMeter struct {
	mu sync.Mutex
	n  int64
}

func (m *countMeter) Add(d int64) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n += d
	return m.n
}

func (m *countMeter) load() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n
}

// TestAdv22SharedPoolStalledPeer: copies from pipes into sockets share a
// pool of one pipe; the first copy's peer reads nothing, so that copy
// holds the only pool pipe with bytes in it. The other copies must not
// wait for it: they go through userspace buffers and deliver every byte
// while the first stays stuck. Cancelled then, the first accounts for
// its bytes.
func TestAdv22SharedPoolStalledPeer(t *testing.T) {
	fdtest.Check(t)
	for _, kind := range adv22PipeKinds {
		t.Run(kind, func(t *testing.T) {
			pool := NewPool(0, 1)
			defer pool.Close()
			const stalledTotal = 16 << 20
			stalledData := fdtest.Random(stalledTotal)
			r0, w0 := adv22Pipe(t, kind)
			fed := fdtest.WriteAndClose(w0, stalledData)
			end0, peer0 := adv22Dst(t, "tcp", false)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			meter := new(countMeter)
			dst0 := endOf(t, end0, false)
			dst0.Meter = meter
			res0 := goCopy(ctx, dst0, endOf(t, r0, true), -1, pool)
			fdtest.Within(t, 20*time.Second, func() {
				waitStuck(meter)
				for pool.Stats().InUse != 1 {
					waitStuck(meter)
				}
			})
			// The stalled copy holds the pool's one pipe. Three more
			// copies, each of a few MiB, must complete meanwhile.
			var wg sync.WaitGroup
			errs := make(chan error, 3)
			for i := range 3 {
				data := fdtest.Random(3<<20 + i*4099)
				r, w := adv22Pipe(t, kind)
				go func() {
					w.Write(data)
					w.Close()
				}()
				end, peer := adv22Dst(t, []string{"tcp", "unix"}[i%2], i == 2)
				got := make(chan []byte, 1)
				go func() { b, _ := io.ReadAll(peer); got <- b }()
				wg.Add(1)
				go func() {
					defer wg.Done()
					n, _, err := Copy(context.Background(), endOf(t, end, false), endOf(t, r, true), -1, pool)
					end.(io.Closer).Close()
					b := <-got
					if err != nil || n != int64(len(data)) || !bytes.Equal(b, data) {
						errs <- fmt.Errorf("copy %d = %d, %v; the peer got %d of %d bytes", i, n, err, len(b), len(data))
					}
				}()
			}
			fdtest.Within(t, 20*time.Second, wg.Wait)
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			var rr copyResult
			fdtest.Within(t, 20*time.Second, func() { cancel(); rr = <-res0 })
			if !errors.Is(rr.err, context.Canceled) {
				t.Fatalf("stalled copy = %d, %v; want context.Canceled", rr.n, rr.err)
			}
			end0.(io.Closer).Close()
			peerGot, _ := io.ReadAll(peer0)
			rest, err := io.ReadAll(r0)
			<-fed
			if err != nil {
				t.Fatal(err)
			}
			adv22Account(t, stalledData, rr.n, rr.err, rest, peerGot)
			if st := pool.Stats(); st.InUse != 0 || st.Exhausted == 0 {
				t.Fatalf("pool after the copies: %+v; want none in use, some rounds without a pipe", st)
			}
		})
	}
}

// TestAdv22FifoWriterComesAndGoes: a FIFO whose writer writes and closes
// reads as EOF, as io.Copy's read does: the copy ends with exactly that
// writer's bytes; a copy started after a second writer opened gets that
// writer's bytes, none lost between the two.
func TestAdv22FifoWriterComesAndGoes(t *testing.T) {
	fdtest.Check(t)
	pool := NewPool(4096, 1)
	defer pool.Close()
	r, w := fifo(t)
	end, peer := adv22Dst(t, "tcp", false)
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(peer); got <- b }()
	var all []byte
	for i := range 3 {
		data := fdtest.Random(200<<10 + i)
		all = append(all, data...)
		if i > 0 {
			var err error
			w, err = os.OpenFile(r.Name(), os.O_WRONLY|unix.O_NONBLOCK, 0)
			if err != nil {
				t.Fatal(err)
			}
		}
		ww := w
		go func() {
			ww.Write(data)
			ww.Close()
		}()
		var n int64
		var err error
		fdtest.Within(t, 20*time.Second, func() {
			n, _, err = Copy(context.Background(), endOf(t, end, false), endOf(t, r, true), -1, pool)
		})
		if err != nil || n != int64(len(data)) {
			t.Fatalf("writer %d: Copy = %d, %v; want %d", i, n, err, len(data))
		}
	}
	end.(io.Closer).Close()
	if b := <-got; !bytes.Equal(b, all) {
		t.Fatalf("the peer got %d bytes, not the %d the writers wrote", len(b), len(all))
	}
}

// TestAdv22TwoCopiesOneSource: two copies read one source pipe at once,
// into two sockets, through a shared pool. Each byte the writer put in
// goes to exactly one peer: the peers' bytes together are a permutation
// of the source's (same count of every byte value), nothing duplicated or
// lost.
func TestAdv22TwoCopiesOneSource(t *testing.T) {
	fdtest.Check(t)
	for _, kind := range adv22PipeKinds {
		t.Run(kind, func(t *testing.T) {
			pool := NewPool(64<<10, 1)
			defer pool.Close()
			const total = 8 << 20
			data := fdtest.Random(total)
			r, w := adv22Pipe(t, kind)
			go func() {
				w.Write(data)
				w.Close()
			}()
			var wg sync.WaitGroup
			var mu sync.Mutex
			var hist [256]int64
			var sumN int64
			for i := range 2 {
				end, peer := adv22Dst(t, []string{"tcp", "unix"}[i], false)
				got := make(chan []byte, 1)
				go func() { b, _ := io.ReadAll(peer); got <- b }()
				wg.Add(1)
				go func() {
					defer wg.Done()
					n, _, err := Copy(context.Background(), endOf(t, end, false), endOf(t, r, true), -1, pool)
					end.(io.Closer).Close()
					b := <-got
					if err != nil || n != int64(len(b)) {
						t.Errorf("copy %d = %d, %v; its peer got %d", i, n, err, len(b))
					}
					mu.Lock()
					defer mu.Unlock()
					sumN += int64(len(b))
					for _, c := range b {
						hist[c]++
					}
				}()
			}
			fdtest.Within(t, 20*time.Second, wg.Wait)
			var want [256]int64
			for _, c := range data {
				want[c]++
			}
			if sumN != total || hist != want {
				t.Fatalf("the peers got %d bytes together, of %d; same byte counts: %v", sumN, total, hist == want)
			}
		})
	}
}

// adv22Pacer grants at most grant bytes a Take and counts what it
// granted and what came back; from the second Take on it records how
// many pool pipes are in use (a wait for a grant must hold none).
type adv22Pacer struct {
	grant    int
	pool     *Pool
	block    int // from this Take on, wait for ctx (0: never)
	mu       sync.Mutex
	takes    int
	granted  int64
	refunded int64
	heldPipe int
}

func (p *adv22Pacer) Take(ctx context.Context, max int) (int, error) {
	p.mu.Lock()
	p.takes++
	if p.pool.Stats().InUse != 0 {
		p.heldPipe++
	}
	block := p.block > 0 && p.takes >= p.block
	p.mu.Unlock()
	if block {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	n := min(max, p.grant)
	p.mu.Lock()
	p.granted += int64(n)
	p.mu.Unlock()
	return n, nil
}

func (p *adv22Pacer) Refund(n int) {
	p.mu.Lock()
	p.refunded += int64(n)
	p.mu.Unlock()
}

// TestAdv22PacedPipeSource: a paced pipe -> socket copy reads exactly
// what its Pacer granted less what it refunded: granted - refunded ==
// written + undelivered, whether it reaches EOF, its limit, or is
// cancelled while waiting for a grant; it holds no pool pipe while it
// waits for the Pacer; every byte is delivered in order or accounted for.
func TestAdv22PacedPipeSource(t *testing.T) {
	fdtest.Check(t)
	const total = 1<<20 + 3
	for _, kind := range adv22PipeKinds {
		for _, grant := range []int{1, 1000, 4096, 70000} {
			for _, mode := range []string{"eof", "limit", "cancel"} {
				if grant == 1 && mode != "cancel" {
					continue // a grant a byte: too many rounds
				}
				t.Run(fmt.Sprintf("%s/grant=%d/%s", kind, grant, mode), func(t *testing.T) {
					pool := NewPool(0, 1)
					defer pool.Close()
					data := fdtest.Random(total)
					r, w := adv22Pipe(t, kind)
					fed := fdtest.WriteAndClose(w, data)
					end, peer := adv22Dst(t, "tcp", false)
					got := make(chan []byte, 1)
					go func() { b, _ := io.ReadAll(peer); got <- b }()
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					pacer := &adv22Pacer{grant: grant, pool: pool}
					limit := int64(-1)
					switch mode {
					case "limit":
						limit = total / 3
					case "cancel":
						pacer.block = 5
						go func() {
							for {
								pacer.mu.Lock()
								k := pacer.takes
								pacer.mu.Unlock()
								if k >= pacer.block {
									cancel()
									return
								}
								time.Sleep(time.Millisecond)
							}
						}()
					}
					srcEnd := endOf(t, r, true)
					srcEnd.Pacer = pacer
					var n int64
					var err error
					fdtest.Within(t, 20*time.Second, func() {
						n, _, err = Copy(ctx, endOf(t, end, false), srcEnd, limit, pool)
					})
					switch mode {
					case "eof":
						if err != nil || n != total {
							t.Fatalf("Copy = %d, %v; want %d", n, err, total)
						}
					case "limit":
						if err != nil || n != limit {
							t.Fatalf("Copy = %d, %v; want %d", n, err, limit)
						}
					case "cancel":
						if !errors.Is(err, context.Canceled) {
							t.Fatalf("Copy = %d, %v; want context.Canceled", n, err)
						}
					}
					end.(io.Closer).Close()
					peerGot := <-got
					rest, rerr := io.ReadAll(r)
					<-fed
					if rerr != nil {
						t.Fatal(rerr)
					}
					adv22Account(t, data, n, err, rest, peerGot)
					pacer.mu.Lock()
					defer pacer.mu.Unlock()
					if read := n + adv22Lost(err); pacer.granted-pacer.refunded != read {
						t.Errorf("the Pacer granted %d, got %d back: %d net, the copy read %d",
							pacer.granted, pacer.refunded, pacer.granted-pacer.refunded, read)
					}
					if pacer.heldPipe != 0 {
						t.Errorf("%d of %d Takes ran with a pool pipe in use", pacer.heldPipe, pacer.takes)
					}
				})
			}
		}
	}
}

// TestAdv22OddEnds: a pipe -> socket copy with a pool, on ends io.Copy
// has an answer for, gives that answer: a source or destination closed
// before the copy (os.ErrClosed, net.ErrClosed), a source that is a
// pipe's write end (EBADF, nothing delivered), a destination shut down
// for writing or past its write deadline with the source at EOF (0, nil:
// io.Copy reads first) or with bytes (EPIPE, or the deadline, the bytes
// read reported undelivered and the rest left in the source), a context
// already ended; and it holds no pool pipe afterwards.
func TestAdv22OddEnds(t *testing.T) {
	fdtest.Check(t)
	const size = 100000
	for _, tc := range []struct {
		name    string
		data    bool // the source holds bytes (else it is at EOF)
		prepare func(t *testing.T, r, w *os.File, end net.Conn, cancel context.CancelFunc) (srcConn *os.File)
		want    error // nil: (0, nil)
	}{
		{"closed-source", true, func(t *testing.T, r, w *os.File, end net.Conn, _ context.CancelFunc) *os.File {
			r.Close()
			return r
		}, os.ErrClosed},
		{"closed-destination", true, func(t *testing.T, r, w *os.File, end net.Conn, _ context.CancelFunc) *os.File {
			end.Close()
			return r
		}, net.ErrClosed},
		{"write-end-source", true, func(t *testing.T, r, w *os.File, end net.Conn, _ context.CancelFunc) *os.File {
			return w
		}, syscall.EBADF},
		{"shut-destination-eof", false, func(t *testing.T, r, w *os.File, end net.Conn, _ context.CancelFunc) *os.File {
			end.(interface{ CloseWrite() error }).CloseWrite()
			return r
		}, nil},
		{"shut-destination-data", true, func(t *testing.T, r, w *os.File, end net.Conn, _ context.CancelFunc) *os.File {
			end.(interface{ CloseWrite() error }).CloseWrite()
			return r
		}, syscall.EPIPE},
		{"deadline-eof", false, func(t *testing.T, r, w *os.File, end net.Conn, _ context.CancelFunc) *os.File {
			end.SetWriteDeadline(time.Unix(1, 0))
			return r
		}, nil},
		{"deadline-data", true, func(t *testing.T, r, w *os.File, end net.Conn, _ context.CancelFunc) *os.File {
			end.SetWriteDeadline(time.Unix(1, 0))
			return r
		}, os.ErrDeadlineExceeded},
		{"cancelled", true, func(t *testing.T, r, w *os.File, end net.Conn, cancel context.CancelFunc) *os.File {
			cancel()
			return r
		}, context.Canceled},
	} {
		for _, kind := range adv22PipeKinds {
			for _, network := range []string{"tcp", "unix"} {
				t.Run(tc.name+"/"+kind+"/"+network, func(t *testing.T) {
					pool := NewPool(0, 2)
					defer pool.Close()
					r, w := adv22Pipe(t, kind)
					var data []byte
					if tc.data {
						data = fdtest.Random(size)
						if _, err := w.Write(data[:60000]); err != nil { // fits: no writer goroutine
							t.Fatal(err)
						}
						data = data[:60000]
					}
					end, peer := connPair(t, network)
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					srcFile := tc.prepare(t, r, w, end, cancel)
					if !tc.data {
						w.Close()
					}
					var n int64
					var err error
					fdtest.Within(t, 20*time.Second, func() {
						n, _, err = Copy(ctx, endOf(t, end.(syscall.Conn), false), endOf(t, srcFile, true), -1, pool)
					})
					if tc.want == nil && (n != 0 || err != nil) || tc.want != nil && (n != 0 || !errors.Is(err, tc.want)) {
						t.Fatalf("Copy = %d, %v; want 0, %v", n, err, tc.want)
					}
					end.Close()
					if peerGot, _ := io.ReadAll(peer); len(peerGot) != 0 {
						t.Fatalf("Copy = %d, %v; the peer got %d bytes", n, err, len(peerGot))
					}
					if tc.data && tc.name != "closed-source" && tc.name != "write-end-source" {
						w.Close()
						rest, rerr := io.ReadAll(r)
						if rerr != nil {
							t.Fatal(rerr)
						}
						adv22Account(t, data, n, err, rest, nil)
					}
					if st := pool.Stats(); st.InUse != 0 {
						t.Fatalf("pool after the copy: %+v", st)
					}
				})
			}
		}
	}
}

// TestAdv22ChurnAccounting: many pipe -> socket copies share a pool of
// two small pipes; their peers read at different paces and half of the
// copies are cancelled part-way (some while the pool pipe holds bytes,
// some while a buffer round holds them). For every copy, every byte is
// delivered in order (the peer reads exactly data[:written]), reported
// undelivered, or still in its source; no pool pipe stays in use.
func TestAdv22ChurnAccounting(t *testing.T) {
	fdtest.Check(t)
	for _, kind := range adv22PipeKinds {
		t.Run(kind, func(t *testing.T) {
			pool := NewPool(64<<10, 2)
			defer pool.Close()
			const copies = 12
			var wg sync.WaitGroup
			for i := range copies {
				total := 2<<20 + i*1021
				data := fdtest.Random(total)
				r, w := adv22Pipe(t, kind)
				fed := fdtest.WriteAndClose(w, data)
				network := []string{"tcp", "unix"}[i%2]
				end, peer := adv22Dst(t, network, i%3 == 2)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				meter := new(countMeter)
				dstEnd := endOf(t, end, false)
				dstEnd.Meter = meter
				cancelAt := int64(-1)
				if i%2 == 1 {
					cancelAt = int64(total) / int64(2+i%3)
				}
				peerGot := make(chan []byte, 1)
				go func() {
					var got []byte
					buf := make([]byte, 1000+i*3000)
					for reads := 0; ; reads++ {
						m, err := peer.Read(buf)
						got = append(got, buf[:m]...)
						if err != nil {
							break
						}
						if i%4 == 0 && reads%16 == 0 {
							time.Sleep(50 * time.Microsecond)
						}
						if cancelAt >= 0 && int64(len(got)) >= cancelAt {
							cancel()
						}
					}
					peerGot <- got
				}()
				wg.Add(1)
				go func() {
					defer wg.Done()
					n, _, err := Copy(ctx, dstEnd, endOf(t, r, true), -1, pool)
					if cancelAt < 0 && (err != nil || n != int64(total)) {
						t.Errorf("copy %d = %d, %v; want %d", i, n, err, total)
					}
					if err != nil && !errors.Is(err, context.Canceled) {
						t.Errorf("copy %d = %d, %v", i, n, err)
					}
					if n != meter.load() {
						t.Errorf("copy %d = %d, %v; the Meter counted %d", i, n, err, meter.load())
					}
					end.(io.Closer).Close()
					got := <-peerGot
					rest, rerr := io.ReadAll(r)
					<-fed
					lost := adv22Lost(err)
					if rerr != nil || n+lost+int64(len(rest)) != int64(total) || !bytes.Equal(rest, data[n+lost:]) || !bytes.Equal(got, data[:n]) {
						t.Errorf("copy %d = %d, %v (%d undelivered); the peer got %d, the source holds %d (%v): %d of %d unaccounted for",
							i, n, err, lost, len(got), len(rest), rerr, int64(total)-n-lost-int64(len(rest)), total)
					}
				}()
			}
			fdtest.Within(t, 20*time.Second, wg.Wait)
			if st := pool.Stats(); st.InUse != 0 {
				t.Fatalf("pool after the copies: %+v", st)
			}
		})
	}
}
