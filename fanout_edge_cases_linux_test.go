//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// FanOut at its edges: a fan-out of a cold file stopped by a cancel or
// Engine.Close; a TCP source with urgent data; fan-outs and a Copier
// under an exhausted pipe quota; a thousand destinations; destinations
// stopped while chunks wait for them; odd sources; an O_DIRECT source
// under a limit; the largest buffer.

// adv28Drain reads r to its end in a goroutine and returns what it got.
func adv28Drain(r io.Reader) <-chan []byte {
	ch := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r)
		ch <- b
	}()
	return ch
}

// TestAdv28FanOutColdFileStop stops a fan-out of a file that is not in
// the page cache (on the io_uring backend the ring reads its chunks in
// first) by a cancel or Engine.Close as the first bytes arrive: each
// destination must have every byte with no error, or a prefix of
// Written bytes and an error matching context.Canceled (and ErrClosed
// after Close).
func TestAdv28FanOutColdFileStop(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(24<<20 + 5)
	for _, stop := range []string{"cancel", "close"} {
		for _, limited := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/limited=%v", stop, limited), func(t *testing.T) {
				for iter := range 6 {
					e, err := NewEngine()
					if err != nil {
						t.Fatal(err)
					}
					f := fdtest.TempFile(t, data)
					fdtest.Evict(t, f)
					var src io.Reader = f
					if limited {
						src = &io.LimitedReader{R: f, N: int64(len(data))}
					}
					ctx, cancel := context.WithCancel(context.Background())
					var once sync.Once
					halt := func() {
						once.Do(func() {
							if stop == "cancel" {
								cancel()
							} else {
								go e.Close()
							}
						})
					}
					var trig bytes.Buffer
					var seen int
					dsts := []io.Writer{onlyWriter{writerFunc(func(p []byte) (int, error) {
						seen += len(p)
						if seen > iter*300<<10 {
							halt()
						}
						return trig.Write(p)
					})}}
					fins := []func() []byte{func() []byte { return trig.Bytes() }}
					for _, k := range advSinks {
						w, fin := advSink(t, k)
						dsts, fins = append(dsts, w), append(fins, fin)
					}
					res := e.FanOut(ctx, src, dsts)
					for i, fin := range fins {
						got, r := fin(), res[i]
						whole := r.Err == nil && bytes.Equal(got, data) && r.Written == int64(len(data))
						cut := errors.Is(r.Err, context.Canceled) && int64(len(got)) == r.Written && bytes.Equal(got, data[:len(got)])
						if stop == "close" {
							cut = cut && errors.Is(r.Err, ErrClosed)
						}
						if !whole && !cut {
							t.Errorf("iter %d destination %d: Written %d, %v; got %d bytes (a prefix: %v)",
								iter, i, r.Written, r.Err, len(got), bytes.HasPrefix(data, got))
						}
					}
					cancel()
					e.Close()
				}
			})
		}
	}
}

// TestAdv28FanOutUrgentSource fans out a TCP connection whose peer sends
// urgent bytes (MSG_OOB) between pieces of the stream, the first before
// any byte, the last after the stream: every destination must get the
// stream without the urgent bytes, as io.Copy's reads do, and no error.
// Each urgent byte is sent once the destinations have the bytes before
// it: a second mark arriving before the reader passed the first turns
// the first urgent byte into data, for io.Copy too.
func TestAdv28FanOutUrgentSource(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, buf := range []int{0, 4096} {
			t.Run(fmt.Sprintf("%s/buffer=%d", ec.name, buf), func(t *testing.T) {
				a, b := tcpPair(t)
				defer a.Close()
				defer b.Close()
				var want []byte
				pieces := make([][]byte, 12)
				for i := range pieces {
					pieces[i] = fdtest.Random(1 + i*i*2000)
					want = append(want, pieces[i]...)
				}
				var mu sync.Mutex
				cond := sync.NewCond(&mu)
				var seen []byte
				counter := onlyWriter{writerFunc(func(p []byte) (int, error) {
					mu.Lock()
					defer mu.Unlock()
					seen = append(seen, p...)
					cond.Broadcast()
					return len(p), nil
				})}
				awaitSeen := func(n int) {
					mu.Lock()
					defer mu.Unlock()
					for len(seen) < n {
						cond.Wait()
					}
				}
				go func() {
					defer b.Close()
					sent := 0
					for i, p := range pieces {
						if i%3 == 0 {
							awaitSeen(sent)
							fdtest.SendOOB(t, b)
						}
						if _, err := b.Write(p); err != nil {
							return
						}
						sent += len(p)
					}
					awaitSeen(sent)
					fdtest.SendOOB(t, b)
				}()
				dsts := []io.Writer{counter}
				fins := []func() []byte{func() []byte { return seen }}
				for _, k := range advSinks {
					w, fin := advSink(t, k)
					dsts, fins = append(dsts, w), append(fins, fin)
				}
				res := e.FanOut(context.Background(), a, dsts, FanOutBuffer(buf))
				for i, fin := range fins {
					got := fin()
					if res[i].Err != nil || res[i].Written != int64(len(want)) || !bytes.Equal(got, want) {
						t.Errorf("destination %d: %+v; got %d bytes, want %d", i, res[i], len(got), len(want))
					}
				}
			})
		}
	}
}

// adv28HogPipes uses up the per-user pipe quota (pipe-user-pages-soft)
// of an unprivileged caller, leaving spare pages of it (in 1 MiB
// pipes' worth, rounded), and closes the pipes when the test ends.
func adv28HogPipes(t *testing.T, spare int) {
	t.Helper()
	var fds []int
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	for range 4096 {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		fds = append(fds, p[0], p[1])
		if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, 1<<20); err != nil {
			// Over the quota: new pipes get 2 pages. Give back spare.
			for range spare {
				unix.Close(fds[0])
				unix.Close(fds[1])
				fds = fds[2:]
			}
			return
		}
	}
	t.Fatal("no pipe quota met")
}

// TestAdv28UnderPipeQuota runs fan-outs and a Copier as an unprivileged
// user whose pipe quota is used up (new pipes get 2 pages, none can
// grow) or nearly (the first private pipes get their size, the later
// ones 2 pages): every destination must get every byte.
func TestAdv28UnderPipeQuota(t *testing.T) {
	if os.Getenv("PIPES_TEST_UNPRIVILEGED") == "" {
		if os.Getuid() != 0 || testing.Short() {
			t.Skip("re-run as uid 65534 by root")
		}
		runUnprivileged(t, "^TestAdv28UnderPipeQuota$")
		return
	}
	data := fdtest.Random(1<<20 + 4097)
	for _, spare := range []int{0, 3} {
		for _, ec := range engineCases(t) {
			t.Run(fmt.Sprintf("spare=%d/%s", spare, ec.name), func(t *testing.T) {
				adv28HogPipes(t, spare)
				e := newTestEngine(t, ec.opts...)
				for _, srcKind := range []string{"file", "pipe", "unix", "reader"} {
					src := adv28Source(t, srcKind, data)
					var dsts []io.Writer
					var fins []func() []byte
					for range 3 {
						for _, k := range advSinks {
							w, fin := advSink(t, k)
							dsts, fins = append(dsts, w), append(fins, fin)
						}
					}
					res := e.FanOut(context.Background(), src, dsts)
					for i, fin := range fins {
						if got := fin(); res[i].Err != nil || !bytes.Equal(got, data) {
							t.Errorf("%s -> %d (%s): %+v, got %d bytes", srcKind, i, advSinks[i%len(advSinks)], res[i], len(got))
						}
					}
				}
				src, in := ptNewPipe(t)
				sinks := []*copierSinkT{newCopierSinkT(t, -1), newCopierSinkT(t, -1)}
				c, err := NewCopier(context.Background(), src, sinks[0].w)
				if err != nil {
					t.Fatalf("NewCopier: %v", err)
				}
				if err := c.Add(sinks[1].w); err != nil {
					t.Logf("Add: %v", err)
					sinks = sinks[:1]
				}
				go func() {
					in.Write(data)
					in.Close()
				}()
				if err := c.Wait(); err != nil {
					t.Errorf("Copier: %v", err)
				}
				for i, s := range sinks {
					checkSame(t, fmt.Sprintf("copier writer %d", i), s.finish(), data)
				}
			})
		}
	}
}

// TestAdv28FanOutManyDestinations fans out to 1030 pipes (past the
// 512 destinations from which the default buffer's budget no longer
// holds), some of them failing (their readers closed at once), on the
// kernel path and through userspace: every other destination must get
// every byte.
func TestAdv28FanOutManyDestinations(t *testing.T) {
	fdtest.Check(t)
	const n = 1030
	data := fdtest.Random(100<<10 + 7)
	e := newTestEngine(t)
	for _, srcKind := range []string{"file", "reader"} {
		t.Run(srcKind, func(t *testing.T) {
			src := adv28Source(t, srcKind, data)
			dsts := make([]io.Writer, n)
			got := make([]<-chan []byte, n)
			var closers []io.Closer
			for i := range dsts {
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				closers = append(closers, r, w)
				dsts[i] = w
				if i%97 == 5 {
					r.Close()
					continue
				}
				got[i] = adv28Drain(r)
			}
			defer func() {
				for _, c := range closers {
					c.Close()
				}
			}()
			res := e.FanOut(context.Background(), src, dsts)
			for i, w := range dsts {
				w.(*os.File).Close()
				if got[i] == nil {
					if !errors.Is(res[i].Err, syscall.EPIPE) {
						t.Errorf("destination %d, reader closed: %+v", i, res[i])
					}
					continue
				}
				if b := <-got[i]; res[i].Err != nil || !bytes.Equal(b, data) {
					t.Errorf("destination %d: %+v, got %d bytes", i, res[i], len(b))
				}
			}
		})
	}
}

// adv28Stuck is a destination whose first Write waits until its write
// deadline is set in the past (a fan-out stopping it), then takes its
// bytes; it counts the Writes that start after that.
type adv28Stuck struct {
	mu    sync.Mutex
	woken chan struct{}
	once  sync.Once
	calls int
	late  int // Writes begun once the deadline was set in the past
	got   bytes.Buffer
}

func newAdv28Stuck() *adv28Stuck { return &adv28Stuck{woken: make(chan struct{})} }

func (s *adv28Stuck) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.calls++
	first := s.calls == 1
	select {
	case <-s.woken:
		s.late++
	default:
	}
	s.mu.Unlock()
	if first {
		<-s.woken
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got.Write(p)
}

func (s *adv28Stuck) SetWriteDeadline(t time.Time) error {
	if !t.IsZero() && time.Until(t) < 0 {
		s.once.Do(func() { close(s.woken) })
	}
	return nil
}

// TestAdv28FanOutNoWriteAfterStop: a destination whose Write cannot be
// interrupted is stopped (by a cancel, or evicted) while chunks wait in
// its queue: once that Write returns, no other Write may begin. The
// userspace fan-out's destination took the next queued chunk or the stop
// at random, and went on writing after it was stopped: bytes delivered
// past the cancel or the eviction, and the fan-out's return delayed by
// a Write for each.
func TestAdv28FanOutNoWriteAfterStop(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(2<<20 + 3)
	e := newTestEngine(t)
	for _, srcKind := range []string{"file", "reader"} {
		for _, how := range []string{"cancel", "evict"} {
			t.Run(srcKind+"/"+how, func(t *testing.T) {
				mkSrc := func() io.Reader {
					if srcKind == "file" {
						return fdtest.TempFile(t, data)
					}
					return onlyReader{bytes.NewReader(data)}
				}
				stuck := make([]*adv28Stuck, 16)
				dsts := make([]io.Writer, len(stuck))
				for i := range stuck {
					stuck[i] = newAdv28Stuck()
					dsts[i] = stuck[i]
				}
				var fins []func() []byte
				opts := []FanOutOption{FanOutBuffer(4 * 32 << 10)}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				if how == "evict" {
					opts = append(opts, FanOutEvictAfter(time.Second))
					for _, k := range advSinks {
						w, fin := advSink(t, k)
						dsts, fins = append(dsts, w), append(fins, fin)
					}
				} else {
					time.AfterFunc(50*time.Millisecond, cancel)
				}
				res := e.FanOut(ctx, mkSrc(), dsts, opts...)
				for i, s := range stuck {
					s.mu.Lock()
					late, n := s.late, s.got.Len()
					s.mu.Unlock()
					if late > 0 || res[i].Written != int64(n) || !bytes.Equal(s.got.Bytes(), data[:n]) {
						t.Errorf("stuck destination %d: %d Writes after its stop; %+v, got %d bytes", i, late, res[i], n)
					}
					want := context.Canceled
					if how == "evict" {
						want = ErrEvicted
					}
					if !errors.Is(res[i].Err, want) {
						t.Errorf("stuck destination %d: %v, want %v", i, res[i].Err, want)
					}
				}
				for i, fin := range fins {
					r := res[len(stuck)+i]
					if got := fin(); r.Err != nil || !bytes.Equal(got, data) {
						t.Errorf("%s: %+v, got %d bytes", advSinks[i], r, len(got))
					}
				}
			})
		}
	}
}

// TestAdv28FanOutOddSources fans out every odd source of the copy tests
// (advOddSources: files the kernel refuses or splices specially,
// devices, procfs, message sockets, a terminal) to one destination of
// each kind at once, and wants from each what io.Copy gives it alone.
func TestAdv28FanOutOddSources(t *testing.T) {
	fdtest.Check(t)
	sinks := adv28WholeSinks()
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, src := range advOddSources() {
			if src.name == "nil-file" {
				continue // FanOut fails every destination: documented
			}
			t.Run(ec.name+"/"+src.name, func(t *testing.T) {
				adv20Compare(t, e, func(t *testing.T) io.Reader { return src.make(t).(io.Reader) }, sinks)
			})
		}
	}
}

// TestAdv28FanOutDirectSourceLimited fans out a file opened O_DIRECT
// under an *io.LimitedReader whose N is not a multiple of the block
// size: the read that meets N fails (EINVAL), and each destination must
// get what io.Copy gets, its count and its error. The kernel fan-out
// read the file in chunks of its staging pipe and failed at the chunk
// that held N: 524,288 bytes delivered for N = 600,000 where io.Copy's
// 32 KiB reads deliver 589,824.
func TestAdv28FanOutDirectSourceLimited(t *testing.T) {
	fdtest.Check(t)
	fdtest.DirectRefusesUnaligned(t)
	data := fdtest.Random(2 << 20)
	path := filepath.Join(t.TempDir(), "direct")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sinks := adv28WholeSinks()
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, n := range []int64{100000, 600000, 1<<20 + 40000, 3 << 20} {
			for _, buf := range []int{0, 4096} {
				t.Run(fmt.Sprintf("%s/N=%d/buffer=%d", ec.name, n, buf), func(t *testing.T) {
					adv20Compare(t, e, func(t *testing.T) io.Reader {
						f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
						if err != nil {
							t.Fatal(err)
						}
						t.Cleanup(func() { f.Close() })
						return &io.LimitedReader{R: f, N: n}
					}, sinks, FanOutBuffer(buf))
				})
			}
		}
	}
}

// adv28WholeSinks are the small destination kinds of adv20Sinks that
// receive a stream whole (not cut into messages).
func adv28WholeSinks() []adv20Sink {
	var sinks []adv20Sink
	for _, s := range adv20Sinks(false) {
		if !s.cut {
			sinks = append(sinks, s)
		}
	}
	return sinks
}

// adv28Source is a source of data of the kind named: a regular file, a
// reader without a descriptor, or a stream (streamSource's kinds) fed
// by a goroutine.
func adv28Source(t *testing.T, kind string, data []byte) io.Reader {
	switch kind {
	case "file":
		return fdtest.TempFile(t, data)
	case "reader":
		return onlyReader{bytes.NewReader(data)}
	}
	return streamSource(t, kind, data)
}

// TestAdv10FanOutHugeBuffer: FanOutBuffer accepts any positive size,
// and the largest must not break a fan-out: the userspace one made each
// destination's queue with room for Buffer/Chunk chunks at once, which
// for math.MaxInt panicked (makechan: size out of range) in the
// caller's goroutine, and for 1 TiB allocated 384 MiB per destination.
func TestAdv10FanOutHugeBuffer(t *testing.T) {
	fdtest.Check(t)
	// Not closed after a panic, which leaves its FanOut counted in
	// flight: Close would wait for it forever.
	e, err := NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	panicked := false
	defer func() {
		if !panicked {
			e.Close()
		}
	}()
	data := fdtest.Random(1<<20 + 3)
	for _, sk := range adv10Sources() {
		for _, size := range []int{min(1<<40, math.MaxInt), math.MaxInt} {
			t.Run(fmt.Sprintf("%s/%d", sk.name, size), func(t *testing.T) {
				src, _ := sk.make(t, data)
				var ws []io.Writer
				var fins []func() []byte
				for _, k := range []string{"pipe", "tcp"} {
					w, fin := captureSink(t, k)
					ws, fins = append(ws, w), append(fins, fin)
				}
				res := func() (res []Result) {
					defer func() {
						if p := recover(); p != nil {
							panicked = true
							t.Fatalf("FanOut panicked: %v", p)
						}
					}()
					return e.FanOut(context.Background(), src, ws, FanOutBuffer(size))
				}()
				for i, r := range res {
					got := fins[i]()
					if r.Err != nil || r.Written != int64(len(data)) || !bytes.Equal(got, data) {
						t.Errorf("destination %d: %+v, received %d bytes; want all %d", i, r, len(got), len(data))
					}
				}
			})
		}
	}
}
