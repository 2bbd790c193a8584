//go:build !pipes_portable

package pipes

// A differential, randomized tester: seeded sequences of copies, relays
// and fan-outs between random ends, with random sizes, pacing, cancels,
// Engine.Close and failing peers, checked against what io.Copy gives.
//
// Every seed is a subtest (seed=N) and every step of it one too, so that
// a failing sequence is replayed with
//
//	PIPES_FUZZ_SEED=N go test -run 'TestFuzzSequence/seed=N' .
//
// PIPES_FUZZ_SEEDS=K runs K seeds from a random start instead of the few
// fixed ones of a normal run (the start is logged).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
	"golang.org/x/sys/unix"
)

// fzSeeds returns the seeds to run: PIPES_FUZZ_SEED alone, PIPES_FUZZ_SEEDS
// random ones, or a fixed few.
func fzSeeds(t *testing.T) []uint64 {
	if s := os.Getenv("PIPES_FUZZ_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("PIPES_FUZZ_SEED: %v", err)
		}
		return []uint64{v}
	}
	if s := os.Getenv("PIPES_FUZZ_SEEDS"); s != "" {
		k, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("PIPES_FUZZ_SEEDS: %v", err)
		}
		start := rand.Uint64() % 1e9
		t.Logf("seeds %d..%d", start, start+uint64(k)-1)
		seeds := make([]uint64, k)
		for i := range seeds {
			seeds[i] = start + uint64(i)
		}
		return seeds
	}
	return []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
}

// fzSteps is the length of one seed's sequence.
const fzSteps = 24

func TestFuzzSequence(t *testing.T) {
	fdtest.Check(t)
	for _, seed := range fzSeeds(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Logf("seed %d: replay with PIPES_FUZZ_SEED=%d -run 'TestFuzzSequence/seed=%d'", seed, seed, seed)
			rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
			engines := fzEngines(t)
			for step := range fzSteps {
				sub := rng.Uint64()
				op := fzOps[rng.IntN(len(fzOps))]
				t.Run(fmt.Sprintf("%02d-%s", step, op.name), func(t *testing.T) {
					op.run(t, rand.New(rand.NewPCG(sub, seed)), engines)
				})
				if t.Failed() {
					return
				}
			}
		})
	}
}

type fzEngine struct {
	name string
	e    *Engine
}

func fzEngines(t *testing.T) []fzEngine {
	es := []fzEngine{
		{"default", newTestEngine(t)},
		{"pipesize1", newTestEngine(t, WithPipeSize(1))},
		{"maxpipes1", newTestEngine(t, WithMaxPipes(1))},
		{"splice", newTestEngine(t, WithBackend(BackendSplice))},
	}
	if es[0].e.Backend() == BackendIOUring {
		es = append(es, fzEngine{"ring", newTestEngine(t, WithRingMinConcurrency(0))})
	}
	return es
}

var fzOps = []struct {
	name string
	run  func(*testing.T, *rand.Rand, []fzEngine)
}{
	{"copy", fzCopyStep},
	{"copy", fzCopyStep},
	{"copy", fzCopyStep},
	{"copy", fzCopyStep},
	{"batch", fzBatchStep},
	{"relay", fzRelayStep},
	{"fanout", fzFanOutStep},
	{"pre", fzPreStep},
	{"parallel", fzParallelStep},
}

// fzParallelStep runs a few copy steps at once on the same engines, so
// that they contend for the pipe pools (WithMaxPipes(1)) and the ring.
func fzParallelStep(t *testing.T, rng *rand.Rand, engines []fzEngine) {
	for i := range 2 + rng.IntN(3) {
		sub := rand.New(rand.NewPCG(rng.Uint64(), uint64(i)))
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			fzCopy(t, sub, engines, false)
		})
	}
}

var fzSizes = []int{0, 1, 4095, 4096, 4097, 65535, 65537, 1<<20 + 7, 17 << 20}

func fzSize(rng *rand.Rand, max int) int {
	for {
		n := fzSizes[rng.IntN(len(fzSizes))]
		if n == 17<<20 && rng.IntN(4) != 0 {
			continue // rare
		}
		if n <= max {
			return n
		}
	}
}

func fzData(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	var seed [32]byte
	for i := range 4 {
		v := rng.Uint64()
		for j := range 8 {
			seed[i*8+j] = byte(v >> (8 * j))
		}
	}
	rand.NewChaCha8(seed).Read(b)
	return b
}

// fzEnv holds one step's resources: closers run and goroutines waited
// for when the step ends.
type fzEnv struct {
	t       *testing.T
	rng     *rand.Rand
	mu      sync.Mutex
	closers []func()
	wg      sync.WaitGroup
}

func newFzEnv(t *testing.T, rng *rand.Rand) *fzEnv {
	env := &fzEnv{t: t, rng: rng}
	t.Cleanup(func() {
		env.mu.Lock()
		cs := env.closers
		env.mu.Unlock()
		for i := len(cs) - 1; i >= 0; i-- {
			cs[i]()
		}
		env.wg.Wait()
	})
	return env
}

func (env *fzEnv) onEnd(f func()) {
	env.mu.Lock()
	env.closers = append(env.closers, f)
	env.mu.Unlock()
}

func (env *fzEnv) closeAll(cs ...io.Closer) {
	env.onEnd(func() {
		for _, c := range cs {
			c.Close()
		}
	})
}

func (env *fzEnv) goroutine(f func()) {
	env.wg.Add(1)
	go func() { defer env.wg.Done(); f() }()
}

// fzPause sleeps now and then, for a writer or reader of random pace.
func fzPause(rng *rand.Rand) {
	switch rng.IntN(8) {
	case 0:
		time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
	case 1:
		runtime.Gosched()
	}
}

// fzConn returns the two ends of a stream of kind: r is read, w written.
// closeWrite ends the stream for the reader (EOF) without a reset.
func fzConn(env *fzEnv, kind string) (r io.Reader, w io.Writer, closeR, closeW func()) {
	t := env.t
	switch kind {
	case "pipe", "pipeblock", "pipenb":
		var fds [2]int
		flags := syscall.O_CLOEXEC
		if kind == "pipenb" {
			flags |= syscall.O_NONBLOCK
		}
		if err := unix.Pipe2(fds[:], flags); err != nil {
			t.Fatal(err)
		}
		var pr, pw *os.File
		if kind == "pipe" {
			// As os.Pipe makes them: on the netpoller.
			unix.SetNonblock(fds[0], true)
			unix.SetNonblock(fds[1], true)
		}
		pr, pw = os.NewFile(uintptr(fds[0]), "r"), os.NewFile(uintptr(fds[1]), "w")
		env.closeAll(pr, pw)
		return pr, pw, func() { pr.Close() }, func() { pw.Close() }
	case "fifo":
		path := filepath.Join(t.TempDir(), "fifo")
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			t.Fatal(err)
		}
		fr, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		fw, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		env.closeAll(fr, fw)
		return fr, fw, func() { fr.Close() }, func() { fw.Close() }
	case "pipesnew":
		pr, pw, err := New()
		if err != nil {
			t.Fatal(err)
		}
		env.closeAll(pr, pw)
		return pr, pw, func() { pr.Close() }, func() { pw.Close() }
	case "tcp":
		a, b := tcpPair(t)
		if env.rng.IntN(2) == 0 {
			smallBuffers(t, 32<<10, a, b)
		}
		env.closeAll(a, b)
		return b, a, func() { b.Close() }, func() { a.CloseWrite() }
	case "unix":
		a, b := unixPair(t)
		env.closeAll(a, b)
		return b, a, func() { b.Close() }, func() { a.CloseWrite() }
	case "seqpacket":
		a, b := fdtest.SocketPair(t, syscall.SOCK_SEQPACKET)
		env.closeAll(a, b)
		return b, a, func() { b.Close() }, func() { a.CloseWrite() }
	case "unixfile", "unixfileblock":
		// A stream socket as an *os.File, as inherited descriptors
		// (socket activation) are: on the netpoller or, in blocking
		// mode, not.
		flags := syscall.SOCK_STREAM | syscall.SOCK_CLOEXEC
		if kind == "unixfile" {
			flags |= syscall.SOCK_NONBLOCK
		}
		fds, err := syscall.Socketpair(syscall.AF_UNIX, flags, 0)
		if err != nil {
			t.Fatal(err)
		}
		a, b := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
		env.closeAll(a, b)
		return b, a, func() { b.Close() }, func() {
			if rc, err := a.SyscallConn(); err == nil {
				rc.Control(func(fd uintptr) { syscall.Shutdown(int(fd), syscall.SHUT_WR) })
			}
		}
	case "unixgram":
		// A datagram socket, which the engine leaves to io.Copy. Its
		// shutdown reaches no peer, so the writer ends the stream with
		// an empty datagram, which the reader takes for EOF, before it
		// shuts down (later writes fail with EPIPE).
		a, b := fdtest.SocketPair(t, syscall.SOCK_DGRAM)
		env.closeAll(a, b)
		return b, a, func() { b.Close() }, func() {
			a.SetWriteDeadline(time.Time{}) // not the copy's past one
			a.Write(nil)
			a.CloseWrite()
		}
	}
	t.Fatalf("unknown conn kind %q", kind)
	return nil, nil, nil, nil
}

// fzSrc is a copy's source.
type fzSrc struct {
	desc    string
	r       io.Reader
	want    []byte   // what a complete copy delivers
	payload []byte   // the whole payload, before a limit
	conn    bool     // a stream fed by a producer
	file    *os.File // a regular file source: its offset is checked
	off     int64    // the file's offset before the copy
	lr      *io.LimitedReader
	n0      int64         // lr.N before
	rest    func() []byte // what is left in a stream after the copy (read to EOF)
	// stall, set before start, has the producer write half and wait
	// for release (closed at the step's end) before going on.
	stall   chan struct{}
	reset   bool // the producer resets the connection instead of closing (tcp)
	start   func()
	closeIt func() // closes the copy's end
	conner  net.Conn
	section *io.SectionReader
	breader *bytes.Reader
	bbuf    *bytes.Buffer
}

// fzSource builds a random source of size bytes of payload.
func fzSource(env *fzEnv, size int, kinds []string) *fzSrc {
	t, rng := env.t, env.rng
	kind := kinds[rng.IntN(len(kinds))]
	if kind == "seqpacket" && size > 1<<20+7 {
		kind = "unix"
	}
	data := fzData(rng, size)
	s := &fzSrc{desc: kind, want: data, payload: data}
	switch kind {
	case "file", "filerw":
		pre := rng.IntN(3) * (rng.IntN(8192) + 1)
		all := append(fzData(rng, pre), data...)
		path := filepath.Join(t.TempDir(), "src")
		if err := os.WriteFile(path, all, 0o600); err != nil {
			t.Fatal(err)
		}
		flag := os.O_RDONLY
		if kind == "filerw" {
			flag = os.O_RDWR
		}
		f, err := os.OpenFile(path, flag, 0)
		if err != nil {
			t.Fatal(err)
		}
		env.closeAll(f)
		if pre > 0 {
			// Consumed by a read, not a seek, some of the time.
			if rng.IntN(2) == 0 {
				if _, err := io.ReadFull(f, make([]byte, pre)); err != nil {
					t.Fatal(err)
				}
			} else if _, err := f.Seek(int64(pre), io.SeekStart); err != nil {
				t.Fatal(err)
			}
		}
		s.desc += fmt.Sprintf("@%d", pre)
		s.r, s.file, s.off, s.closeIt = f, f, int64(pre), func() { f.Close() }
	case "section":
		pre := rng.IntN(5000)
		all := append(fzData(rng, pre), data...)
		all = append(all, fzData(rng, rng.IntN(5000))...)
		f := fdtest.TempFile(t, all)
		s.section = io.NewSectionReader(f, int64(pre), int64(size))
		s.r = s.section
	case "bytesreader":
		s.breader = bytes.NewReader(data)
		s.r = s.breader
	case "bytesbuffer":
		s.bbuf = bytes.NewBuffer(bytes.Clone(data))
		s.r = s.bbuf
	case "devzero":
		// A character device without end, always under a limit.
		f, err := os.Open("/dev/zero")
		if err != nil {
			t.Fatal(err)
		}
		env.closeAll(f)
		zeros := make([]byte, size)
		s.want, s.payload, s.closeIt = zeros, zeros, func() { f.Close() }
		s.lr = &io.LimitedReader{R: f, N: int64(size)}
		s.n0, s.r = int64(size), s.lr
		s.desc += fmt.Sprintf("+limit%d", size)
		if rng.IntN(5) == 0 {
			s.r = onlyReader{s.r}
			s.desc += "+hidden"
		}
		return s
	default:
		r, w, closeR, closeW := fzConn(env, kind)
		s.r, s.conn, s.closeIt = r, true, closeR
		if c, ok := r.(net.Conn); ok {
			s.conner = c
		}
		maxChunk := 256 << 10
		if kind == "seqpacket" {
			maxChunk = 512 // below every reader's buffer (bytes.Buffer reads 512)
		}
		prng := rand.New(rand.NewPCG(rng.Uint64(), 1))
		s.start = func() {
			stall := s.stall
			env.goroutine(func() {
				p := data
				half := len(p) / 2
				for len(p) > 0 {
					if stall != nil && len(data)-len(p) == half {
						<-stall
						stall = nil
					}
					k := min(len(p), 1+prng.IntN(maxChunk))
					if stall != nil && len(data)-len(p) < half {
						k = min(k, half-(len(data)-len(p)))
					}
					n, err := w.Write(p[:k])
					p = p[n:]
					if err != nil {
						return
					}
					if s.reset && len(data)-len(p) >= half {
						c := w.(*net.TCPConn)
						c.SetLinger(0)
						c.Close()
						return
					}
					fzPause(prng)
				}
				closeW()
			})
		}
		if kind == "seqpacket" {
			// A limit inside a message drops the rest of it, for
			// io.Copy too: nothing to compare.
			return s.wrap(rng, size)
		}
		s.rest = func() []byte {
			// Not through s.r's own deadline: reads with none.
			b, _ := io.ReadAll(struct{ io.Reader }{r})
			return b
		}
	}
	return s.wrap(rng, size)
}

// wrap puts random wrappers around the source.
func (s *fzSrc) wrap(rng *rand.Rand, size int) *fzSrc {
	if rng.IntN(3) == 0 {
		var n int64
		switch rng.IntN(5) {
		case 0:
			n = 0
		case 1:
			n = int64(size)
		case 2:
			n = int64(size) + 1 + int64(rng.IntN(100))
		case 3:
			n = -int64(rng.IntN(3))
		default:
			n = int64(rng.IntN(size + 1))
		}
		s.lr = &io.LimitedReader{R: s.r, N: n}
		s.n0 = n
		s.r = s.lr
		s.want = s.want[:max(0, min(int64(len(s.want)), n))]
		s.desc += fmt.Sprintf("+limit%d", n)
	}
	if rng.IntN(5) == 0 {
		s.r = onlyReader{s.r}
		s.desc += "+hidden"
	}
	fzFarDeadline(rng, s.conner, &s.desc)
	return s
}

// fzFarDeadline gives c, if not nil, a deadline an hour away one time in
// three (a deadline set but not met), and says so in desc.
func fzFarDeadline(rng *rand.Rand, c net.Conn, desc *string) {
	if c != nil && rng.IntN(3) == 0 {
		c.SetDeadline(time.Now().Add(time.Hour))
		*desc += "+deadline"
	}
}

// check checks the source's state after a copy that moved n bytes and
// ended with err.
func (s *fzSrc) check(t *testing.T, n int64, err error) {
	t.Helper()
	if s.lr != nil {
		taken := s.n0 - s.lr.N
		if s.n0 <= 0 {
			taken = 0
			if s.lr.N != s.n0 {
				t.Errorf("%s: LimitedReader.N = %d, want %d untouched", s.desc, s.lr.N, s.n0)
			}
		}
		if err == nil && taken != n {
			t.Errorf("%s: LimitedReader.N went %d -> %d, want less by n=%d", s.desc, s.n0, s.lr.N, n)
		}
		if err != nil && taken < n {
			t.Errorf("%s: LimitedReader.N went %d -> %d, less than n=%d taken", s.desc, s.n0, s.lr.N, n)
		}
	}
	if err != nil {
		return
	}
	switch {
	case s.file != nil:
		off, serr := s.file.Seek(0, io.SeekCurrent)
		if serr == nil && off != s.off+n {
			t.Errorf("%s: file offset %d after the copy, want %d+%d", s.desc, off, s.off, n)
		}
	case s.section != nil:
		off, _ := s.section.Seek(0, io.SeekCurrent)
		if off != n {
			t.Errorf("%s: section offset %d, want %d", s.desc, off, n)
		}
	case s.breader != nil:
		if left := s.breader.Len(); int64(left) != int64(s.breader.Size())-n {
			t.Errorf("%s: bytes.Reader has %d left, want %d", s.desc, left, s.breader.Size()-n)
		}
	case s.bbuf != nil:
		if s.lr == nil && s.bbuf.Len() != 0 {
			t.Errorf("%s: bytes.Buffer has %d left", s.desc, s.bbuf.Len())
		}
	}
}

// checkRest reads what a stream source holds after a successful copy
// limited by a LimitedReader: the bytes after the n copied, none lost to
// a read ahead.
func (s *fzSrc) checkRest(t *testing.T, full []byte, n int64) {
	t.Helper()
	if s.rest == nil || s.stall != nil || s.reset {
		return
	}
	rest := s.rest()
	if want := full[n:]; !bytes.Equal(rest, want) {
		t.Errorf("%s: the source holds %d bytes after the copy, want the %d after the %d copied (first diff at %d)",
			s.desc, len(rest), len(want), n, fzDiff(rest, want))
	}
}

func fzDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// fzDst is a copy's destination.
type fzDst struct {
	desc string
	w    io.Writer
	// finish ends the copy's end and returns the bytes delivered, for
	// a file those past its start offset.
	finish     func() []byte
	file       *os.File
	off        int64
	stall      chan struct{} // the reader stops after stallAt bytes until closed
	stallAt    int
	goneAt     int // >= 0: the reader closes after this many bytes
	conner     net.Conn
	closeIt    func()
	closeR     func() // closes a stream's read end
	message    bool   // seqpacket or unixgram
	datagram   bool   // unixgram: an empty read is the end
	discard    bool   // /dev/null: what was written is not kept
	fileBefore []byte
	appendMode bool
	// startReader starts the reader of a stream destination (nil for
	// others).
	startReader func()
}

func fzDestination(env *fzEnv, kinds []string) *fzDst {
	t, rng := env.t, env.rng
	kind := kinds[rng.IntN(len(kinds))]
	d := &fzDst{desc: kind, goneAt: -1}
	switch kind {
	case "file", "fileappend", "filerw":
		path := filepath.Join(t.TempDir(), "dst")
		pre := fzData(rng, rng.IntN(3)*rng.IntN(9000))
		if err := os.WriteFile(path, pre, 0o600); err != nil {
			t.Fatal(err)
		}
		flag := os.O_WRONLY
		switch kind {
		case "fileappend":
			flag |= os.O_APPEND
		case "filerw":
			flag = os.O_RDWR
		}
		f, err := os.OpenFile(path, flag, 0)
		if err != nil {
			t.Fatal(err)
		}
		env.closeAll(f)
		off := int64(0)
		if len(pre) > 0 && kind != "fileappend" {
			off = int64(rng.IntN(len(pre) + 1))
			if kind == "filerw" && rng.IntN(2) == 0 {
				// Move there by reading.
				if _, err := io.ReadFull(f, make([]byte, off)); err != nil {
					t.Fatal(err)
				}
			} else if _, err := f.Seek(off, io.SeekStart); err != nil {
				t.Fatal(err)
			}
		}
		if kind == "fileappend" {
			off = int64(len(pre))
		}
		d.desc += fmt.Sprintf("@%d/%d", off, len(pre))
		d.w, d.file, d.off, d.fileBefore, d.appendMode = f, f, off, pre, kind == "fileappend"
		d.closeIt = func() { f.Close() }
		d.finish = func() []byte {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	case "devnull":
		f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		env.closeAll(f)
		d.w, d.discard, d.closeIt = f, true, func() { f.Close() }
		d.finish = func() []byte { return nil }
	case "buffer":
		var mu sync.Mutex
		var buf bytes.Buffer
		d.w = writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return buf.Write(p)
		})
		d.finish = func() []byte {
			mu.Lock()
			defer mu.Unlock()
			return bytes.Clone(buf.Bytes())
		}
	default:
		r, w, closeR, closeW := fzConn(env, kind)
		d.w, d.closeIt, d.closeR = w, closeW, closeR
		d.message = kind == "seqpacket" || kind == "unixgram"
		d.datagram = kind == "unixgram"
		if c, ok := w.(net.Conn); ok {
			d.conner = c
		}
		got := make(chan []byte, 1)
		prng := rand.New(rand.NewPCG(rng.Uint64(), 2))
		d.finish = func() []byte {
			closeW()
			return <-got
		}
		start := func() {
			stall, stallAt, goneAt, reset := d.stall, d.stallAt, d.goneAt, prng.IntN(2) == 0
			env.goroutine(func() {
				var all []byte
				bufSize := 1 + prng.IntN(128<<10)
				if d.message {
					bufSize = 1 << 20
				}
				buf := make([]byte, bufSize)
				rr := struct{ io.Reader }{r} // no deadline of the copy's
				for {
					want := len(buf)
					if goneAt >= 0 {
						want = min(want, goneAt-len(all))
						if want <= 0 && !d.message {
							if c, ok := r.(*net.TCPConn); ok && reset {
								c.SetLinger(0)
							}
							closeR()
							break
						}
					}
					if stall != nil && len(all) >= stallAt {
						<-stall
						stall = nil
					}
					n, err := rr.Read(buf[:max(want, 1)])
					all = append(all, buf[:n]...)
					if err != nil || n == 0 && d.datagram {
						break
					}
					if goneAt >= 0 && len(all) >= goneAt {
						if c, ok := r.(*net.TCPConn); ok && reset {
							c.SetLinger(0)
						}
						closeR()
						break
					}
					fzPause(prng)
				}
				got <- all
			})
		}
		d.startReader = start
	}
	if rng.IntN(5) == 0 {
		d.w = onlyWriter{d.w}
		d.desc += "+hidden"
	}
	fzFarDeadline(rng, d.conner, &d.desc)
	return d
}

// expectFile returns what the destination file holds after delivered was
// written at its offset.
func (d *fzDst) expectFile(delivered []byte) []byte {
	out := bytes.Clone(d.fileBefore)
	end := int(d.off) + len(delivered)
	if end > len(out) {
		out = append(out, make([]byte, end-len(out))...)
	}
	copy(out[d.off:], delivered)
	return out
}

var (
	fzSrcKinds = []string{"file", "filerw", "section", "bytesreader", "bytesbuffer",
		"pipe", "pipeblock", "pipenb", "fifo", "pipesnew", "tcp", "unix", "seqpacket",
		"unixfile", "unixfileblock", "devzero"}
	fzDstKinds = []string{"file", "fileappend", "filerw", "buffer",
		"pipe", "pipeblock", "pipenb", "fifo", "pipesnew", "tcp", "unix", "seqpacket",
		"unixgram", "unixfile", "unixfileblock", "devnull"}
)

// fzWatchdog ends the process with desc when a step hangs: a test that
// waits forever says nothing of what it waited for.
func fzWatchdog(t *testing.T, desc string) func() {
	timer := time.AfterFunc(3*time.Minute, func() {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		fmt.Fprintf(os.Stderr, "%s\n%s: hung: %s\n", buf, t.Name(), desc)
		os.Exit(2)
	})
	return func() { timer.Stop() }
}

// fzErrTargets are the errors compared under errors.Is.
var fzErrTargets = []error{os.ErrClosed, net.ErrClosed, syscall.EPIPE, syscall.ECONNRESET,
	context.Canceled, context.DeadlineExceeded, io.ErrUnexpectedEOF, os.ErrDeadlineExceeded,
	syscall.EBADF, syscall.EINVAL, os.ErrInvalid, ErrClosed}

func fzIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// fzSchedule starts, for evCancel and evClose, a goroutine that cancels
// the step's context or closes its engine after delay; the step waits
// for it (Wait) before it checks anything.
func fzSchedule(ev string, delay time.Duration, cancel context.CancelFunc, eng fzEngine) *sync.WaitGroup {
	var wg sync.WaitGroup
	switch ev {
	case evCancel:
		wg.Go(func() { time.Sleep(delay); cancel() })
	case evClose:
		wg.Go(func() { time.Sleep(delay); eng.e.Close() })
	}
	return &wg
}

// fzEvents are what may happen during a copy.
const (
	evNone     = "none"
	evCancel   = "cancel"
	evClose    = "close"    // Engine.Close
	evDstGone  = "dstgone"  // the destination's reader closes midway
	evSrcStall = "srcstall" // the source stalls past its read deadline
	evDstStall = "dststall" // the destination stalls past its write deadline
	evSrcReset = "srcreset" // the source's TCP peer resets midway
)

// fzReadDeadliner is a source end with read deadlines.
type fzReadDeadliner interface{ SetReadDeadline(time.Time) error }
type fzWriteDeadliner interface{ SetWriteDeadline(time.Time) error }

func fzUnwrapR(r io.Reader) io.Reader {
	for {
		switch x := r.(type) {
		case onlyReader:
			r = x.Reader
		case *io.LimitedReader:
			r = x.R
		default:
			return r
		}
	}
}

func fzUnwrapW(w io.Writer) io.Writer {
	if x, ok := w.(onlyWriter); ok {
		return x.Writer
	}
	return w
}

// fzPollable says whether an *os.File end is on the netpoller (its
// deadlines work).
func fzPollable(v any) bool {
	switch x := v.(type) {
	case *os.File:
		return x.SetDeadline(time.Time{}) == nil
	case net.Conn, *PipeReader, *PipeWriter:
		return true
	}
	return false
}

func fzCopyStep(t *testing.T, rng *rand.Rand, engines []fzEngine) {
	fzCopy(t, rng, engines, true)
}

// fzCopy runs one copy between random ends with a random event; alone,
// the engine has no copy in flight once it has returned.
func fzCopy(t *testing.T, rng *rand.Rand, engines []fzEngine, alone bool) {
	env := newFzEnv(t, rng)
	dst := fzDestination(env, fzDstKinds)
	maxSize := 17 << 20
	if dst.message {
		maxSize = 65535
	}
	src := fzSource(env, fzSize(rng, maxSize), fzSrcKinds)

	// The event.
	var evs []string
	evs = append(evs, evNone, evNone, evCancel, evClose)
	if dst.startReader != nil {
		evs = append(evs, evDstGone)
		if fzPollable(fzUnwrapW(dst.w)) {
			evs = append(evs, evDstStall)
		}
	}
	if src.conn && fzPollable(fzUnwrapR(src.r)) {
		evs = append(evs, evSrcStall)
	}
	if src.conn && src.desc[:3] == "tcp" {
		evs = append(evs, evSrcReset)
	}
	ev := evs[rng.IntN(len(evs))]
	methods := []string{"copy", "ctx", "async", "batch"}
	if ev == evCancel {
		methods = []string{"ctx", "async", "batch"}
	}
	method := methods[rng.IntN(len(methods))]
	eng := engines[rng.IntN(len(engines))]
	if ev == evClose {
		opts := [][]Option{nil, {WithPipeSize(1)}, {WithMaxPipes(1)}, {WithBackend(BackendSplice)}}
		i := rng.IntN(len(opts))
		e, err := NewEngine(opts[i]...)
		if err != nil {
			t.Fatal(err)
		}
		eng = fzEngine{fmt.Sprintf("fresh%d", i), e}
		env.onEnd(func() { e.Close() })
	}
	delay := time.Duration(rng.IntN(4000)) * time.Microsecond
	if rng.IntN(4) == 0 {
		delay = 0
	}
	desc := fmt.Sprintf("%s -> %s, %d bytes, %s on %s, event %s (%v)", src.desc, dst.desc, len(src.want), method, eng.name, ev, delay)
	t.Log(desc)
	defer fzWatchdog(t, desc)()

	var release chan struct{}
	switch ev {
	case evDstGone:
		dst.goneAt = rng.IntN(len(src.want) + 1)
	case evSrcStall:
		src.stall = make(chan struct{})
		release = src.stall
		fzUnwrapR(src.r).(fzReadDeadliner).SetReadDeadline(time.Now().Add(delay))
	case evDstStall:
		dst.stall = make(chan struct{})
		dst.stallAt = rng.IntN(len(src.want) + 1)
		release = dst.stall
		fzUnwrapW(dst.w).(fzWriteDeadliner).SetWriteDeadline(time.Now().Add(delay))
	case evSrcReset:
		src.reset = true
	}
	if src.start != nil {
		src.start()
	}
	if dst.startReader != nil {
		dst.startReader()
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evWG := fzSchedule(ev, delay, cancel, eng)
	var n int64
	var err error
	switch method {
	case "copy":
		n, err = eng.e.Copy(dst.w, src.r)
	case "ctx":
		n, err = eng.e.CopyContext(ctx, dst.w, src.r)
	case "async":
		f := eng.e.CopyAsync(ctx, dst.w, src.r)
		n, err = f.Wait()
		if w := f.Written(); w != n {
			t.Errorf("%s: Future.Written() = %d after Wait's %d", desc, w, n)
		}
	case "batch":
		res := eng.e.CopyBatch(ctx, []Pair{{dst.w, src.r}})
		n, err = res[0].Written, res[0].Err
	}
	evWG.Wait()
	if release != nil {
		close(release)
	}
	fzVerify(t, desc, src, dst, ev, n, err)
	if s := eng.e.Stats(); alone && s.InFlight != 0 {
		t.Errorf("%s: Stats.InFlight = %d after the copy", desc, s.InFlight)
	}
}

// fzVerify checks a copy from src to dst that returned n and err, with
// event ev: what the destination holds against n, err against the event,
// the source's state against n.
func fzVerify(t *testing.T, desc string, src *fzSrc, dst *fzDst, ev string, n int64, err error) {
	t.Helper()
	fullData := src.fullData()
	got := dst.finish()
	t.Logf("n=%d err=%v", n, err)

	// n against what the destination holds.
	if n < 0 || n > int64(len(src.want)) {
		t.Fatalf("%s: n=%d out of [0, %d] (err %v)", desc, n, len(src.want), err)
	}
	delivered := src.want[:n]
	switch {
	case dst.file != nil:
		if want := dst.expectFile(delivered); !bytes.Equal(got, want) {
			t.Errorf("%s: destination file holds %d bytes, want %d (n=%d, err %v, first diff at %d)",
				desc, len(got), len(want), n, err, fzDiff(got, want))
		}
		wantOff := dst.off + n
		if dst.appendMode && n == 0 {
			wantOff = 0 // no write moved it to the end
		}
		if off, serr := dst.file.Seek(0, io.SeekCurrent); serr == nil && off != wantOff {
			t.Errorf("%s: destination offset %d after the copy, want %d+%d", desc, off, dst.off, n)
		}
	case dst.discard:
	case ev == evDstGone:
		if !bytes.Equal(got, src.want[:min(len(got), len(src.want))]) || int64(len(got)) > n {
			t.Errorf("%s: the reader got %d bytes (first diff %d) of n=%d", desc, len(got), fzDiff(got, src.want), n)
		}
	default:
		if !bytes.Equal(got, delivered) {
			t.Errorf("%s: destination got %d bytes, n=%d (err %v, first diff at %d)", desc, len(got), n, err, fzDiff(got, delivered))
		}
	}

	// The error.
	complete := n == int64(len(src.want))
	switch {
	case err == nil:
		if !complete {
			t.Errorf("%s: nil error after %d of %d bytes", desc, n, len(src.want))
		}
	case ev == evNone:
		t.Errorf("%s: %v after %d of %d bytes", desc, err, n, len(src.want))
	case ev == evCancel && !errors.Is(err, context.Canceled),
		ev == evClose && !errors.Is(err, ErrClosed),
		ev == evDstGone && !dst.datagram && !fzIsAny(err, syscall.EPIPE, syscall.ECONNRESET),
		// A datagram to a peer gone is refused.
		ev == evDstGone && dst.datagram && !errors.Is(err, syscall.ECONNREFUSED),
		(ev == evSrcStall || ev == evDstStall) && !errors.Is(err, os.ErrDeadlineExceeded),
		ev == evSrcReset && !errors.Is(err, syscall.ECONNRESET):
		t.Errorf("%s: unexpected error %v", desc, err)
	}
	if ev == evSrcStall && err == nil && len(src.want) > len(fullData)/2 {
		t.Errorf("%s: nil error, but the source stalled at %d of %d bytes", desc, len(fullData)/2, len(src.want))
	}
	src.check(t, n, err)
	if err == nil && src.lr != nil && src.lr.N >= 0 {
		src.checkRest(t, fullData, n)
	}
}

// fullData is the payload before any limit.
func (s *fzSrc) fullData() []byte { return s.payload }

// fzBatchStep runs a CopyBatch of a few random pairs, with a cancel or an
// Engine.Close at a random moment or neither.
func fzBatchStep(t *testing.T, rng *rand.Rand, engines []fzEngine) {
	env := newFzEnv(t, rng)
	ev := []string{evNone, evNone, evCancel, evClose}[rng.IntN(4)]
	eng := engines[rng.IntN(len(engines))]
	if ev == evClose {
		e, err := NewEngine(WithMaxPipes(1 + rng.IntN(2)))
		if err != nil {
			t.Fatal(err)
		}
		eng = fzEngine{"fresh", e}
		env.onEnd(func() { e.Close() })
	}
	k := 1 + rng.IntN(4)
	srcs := make([]*fzSrc, k)
	dsts := make([]*fzDst, k)
	pairs := make([]Pair, k)
	desc := fmt.Sprintf("batch on %s, event %s:", eng.name, ev)
	for i := range k {
		dsts[i] = fzDestination(env, fzDstKinds)
		maxSize := 1<<20 + 7
		if dsts[i].message {
			maxSize = 65535
		}
		srcs[i] = fzSource(env, fzSize(rng, maxSize), fzSrcKinds)
		pairs[i] = Pair{Dst: dsts[i].w, Src: srcs[i].r}
		desc += fmt.Sprintf(" [%s -> %s, %d bytes]", srcs[i].desc, dsts[i].desc, len(srcs[i].want))
	}
	delay := time.Duration(rng.IntN(4000)) * time.Microsecond
	t.Log(desc)
	defer fzWatchdog(t, desc)()
	for i := range k {
		if srcs[i].start != nil {
			srcs[i].start()
		}
		if dsts[i].startReader != nil {
			dsts[i].startReader()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evWG := fzSchedule(ev, delay, cancel, eng)
	res := eng.e.CopyBatch(ctx, pairs)
	evWG.Wait()
	for i, r := range res {
		fzVerify(t, fmt.Sprintf("%s pair %d", desc, i), srcs[i], dsts[i], ev, r.Written, r.Err)
	}
}

// fzRelayConn is a relay end hiding its descriptor, with CloseWrite and
// deadlines (so that EOF is passed on and a cancel reaches it).
type fzRelayConn struct {
	c interface {
		io.ReadWriter
		CloseWrite() error
		SetDeadline(time.Time) error
		SetReadDeadline(time.Time) error
		SetWriteDeadline(time.Time) error
	}
}

func (h fzRelayConn) Read(p []byte) (int, error)         { return h.c.Read(p) }
func (h fzRelayConn) Write(p []byte) (int, error)        { return h.c.Write(p) }
func (h fzRelayConn) CloseWrite() error                  { return h.c.CloseWrite() }
func (h fzRelayConn) SetDeadline(t time.Time) error      { return h.c.SetDeadline(t) }
func (h fzRelayConn) SetReadDeadline(t time.Time) error  { return h.c.SetReadDeadline(t) }
func (h fzRelayConn) SetWriteDeadline(t time.Time) error { return h.c.SetWriteDeadline(t) }

// fzRelayStep relays random traffic both ways between two random socket
// pairs, with a cancel, an Engine.Close or a peer's reset at a random
// moment, or none.
func fzRelayStep(t *testing.T, rng *rand.Rand, engines []fzEngine) {
	env := newFzEnv(t, rng)
	type side struct {
		kind  string
		end   io.ReadWriter // the relay's
		peer  net.Conn      // the far peer
		data  []byte        // what the peer sends
		got   chan []byte   // what the peer received
		reset bool
	}
	newSide := func() *side {
		s := &side{kind: []string{"tcp", "unix"}[rng.IntN(2)], got: make(chan []byte, 1)}
		var a, b net.Conn
		if s.kind == "tcp" {
			x, y := tcpPair(t)
			if rng.IntN(2) == 0 {
				smallBuffers(t, 32<<10, x, y)
			}
			a, b = x, y
		} else {
			a, b = unixPair(t)
		}
		env.closeAll(a, b)
		s.end, s.peer = a, b
		if rng.IntN(4) == 0 {
			s.end = fzRelayConn{a.(interface {
				io.ReadWriter
				CloseWrite() error
				SetDeadline(time.Time) error
				SetReadDeadline(time.Time) error
				SetWriteDeadline(time.Time) error
			})}
			s.kind += "+hidden"
		}
		s.data = fzData(rng, fzSize(rng, 1<<20+7))
		return s
	}
	a, b := newSide(), newSide()
	evs := []string{evNone, evNone, evCancel, evClose}
	if a.kind == "tcp" || b.kind == "tcp" {
		evs = append(evs, evSrcReset)
	}
	ev := evs[rng.IntN(len(evs))]
	if ev == evSrcReset {
		if a.kind == "tcp" {
			a.reset = true
		} else {
			b.reset = true
		}
	}
	eng := engines[rng.IntN(len(engines))]
	if ev == evClose {
		e, err := NewEngine()
		if err != nil {
			t.Fatal(err)
		}
		eng = fzEngine{"fresh", e}
		env.onEnd(func() { e.Close() })
	}
	delay := time.Duration(rng.IntN(4000)) * time.Microsecond
	desc := fmt.Sprintf("relay %s (%d bytes) <-> %s (%d bytes) on %s, event %s (%v)", a.kind, len(a.data), b.kind, len(b.data), eng.name, ev, delay)
	t.Log(desc)
	defer fzWatchdog(t, desc)()
	for _, s := range []*side{a, b} {
		prng := rand.New(rand.NewPCG(rng.Uint64(), 3))
		env.goroutine(func() {
			p := s.data
			for len(p) > 0 {
				k := min(len(p), 1+prng.IntN(128<<10))
				n, err := s.peer.Write(p[:k])
				p = p[n:]
				if err != nil {
					return
				}
				if s.reset && len(p) <= len(s.data)/2 {
					s.peer.(*net.TCPConn).SetLinger(0)
					s.peer.Close()
					return
				}
				fzPause(prng)
			}
			if s.reset {
				s.peer.(*net.TCPConn).SetLinger(0)
				s.peer.Close()
				return
			}
			s.peer.(interface{ CloseWrite() error }).CloseWrite()
		})
		env.goroutine(func() {
			b, _ := io.ReadAll(struct{ io.Reader }{s.peer})
			s.got <- b
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evWG := fzSchedule(ev, delay, cancel, eng)
	aToB, bToA, err := eng.e.Relay(ctx, a.end, b.end)
	evWG.Wait()
	t.Logf("aToB=%d bToA=%d err=%v", aToB, bToA, err)
	// Let the peers read to EOF: the relay's ends shut down for writing.
	for _, s := range []*side{a, b} {
		s.end.(interface{ CloseWrite() error }).CloseWrite()
	}
	gotA, gotB := <-a.got, <-b.got
	check := func(what string, got, data []byte, n int64, reset bool) {
		if reset {
			return // a reset peer drops what it had not read
		}
		if n < 0 || n > int64(len(data)) || !bytes.Equal(got, data[:n]) {
			t.Errorf("%s: %s: the peer got %d bytes, the relay counts %d of %d (first diff at %d)",
				desc, what, len(got), n, len(data), fzDiff(got, data[:min(max(n, 0), int64(len(data)))]))
		}
	}
	check("a to b", gotB, a.data, aToB, b.reset)
	check("b to a", gotA, b.data, bToA, a.reset)
	switch {
	case err == nil:
		// A reset peer never sends a FIN, so the direction reading its
		// end never meets a clean EOF: read(2) reports the reset once,
		// whenever it came (also after the other direction's
		// CloseWrite of that end), and nil is never right. Only a
		// reset after that direction's EOF is left unreported, and
		// without a FIN there is none.
		if aToB != int64(len(a.data)) || bToA != int64(len(b.data)) || ev == evSrcReset {
			t.Errorf("%s: nil error after %d of %d and %d of %d bytes", desc, aToB, len(a.data), bToA, len(b.data))
		}
	case ev == evNone,
		ev == evCancel && !errors.Is(err, context.Canceled),
		ev == evClose && !errors.Is(err, ErrClosed),
		ev == evSrcReset && !fzIsAny(err, syscall.ECONNRESET, syscall.EPIPE):
		t.Errorf("%s: unexpected error %v", desc, err)
	}
}

// fzFanOutStep fans a random source out to a random mix of
// destinations, some failing, with a cancel or an Engine.Close or
// neither.
func fzFanOutStep(t *testing.T, rng *rand.Rand, engines []fzEngine) {
	env := newFzEnv(t, rng)
	ev := []string{evNone, evNone, evCancel, evClose}[rng.IntN(4)]
	eng := engines[rng.IntN(len(engines))]
	if ev == evClose {
		e, err := NewEngine()
		if err != nil {
			t.Fatal(err)
		}
		eng = fzEngine{"fresh", e}
		env.onEnd(func() { e.Close() })
	}
	src := fzSource(env, fzSize(rng, 1<<20+7), fzSrcKinds)
	k := 1 + rng.IntN(5)
	type out struct {
		d     *fzDst // nil: a failing one
		kind  string
		w     io.Writer
		limit int // "fail": bytes taken before the error
		buf   bytes.Buffer
	}
	outs := make([]*out, k)
	dsts := make([]io.Writer, k)
	desc := fmt.Sprintf("fanout of %s (%d bytes) on %s, event %s:", src.desc, len(src.want), eng.name, ev)
	var opts []FanOutOption
	if rng.IntN(3) == 0 {
		opts = append(opts, FanOutBuffer(1+rng.IntN(256<<10)))
		desc += " small buffer"
	}
	errFail := errors.New("fuzz: destination failed")
	dstKinds := []string{"file", "fileappend", "filerw", "buffer", "pipe", "pipeblock", "pipenb", "fifo", "pipesnew", "tcp", "unix",
		"unixfile", "unixfileblock", "devnull"}
	for i := range k {
		o := &out{}
		switch rng.IntN(6) {
		case 0:
			o.kind, o.limit = "fail", rng.IntN(len(src.want)+1)
			o.w = writerFunc(func(p []byte) (int, error) {
				if n := o.limit - o.buf.Len(); n < len(p) {
					o.buf.Write(p[:n])
					return n, errFail
				}
				return o.buf.Write(p)
			})
		case 1:
			o.kind = "closedpipe"
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			pr.Close()
			env.closeAll(pw)
			o.w = pw
		case 2:
			o.kind = "closedfile"
			f, err := os.Create(filepath.Join(t.TempDir(), "closed"))
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			o.w = f
		default:
			o.d = fzDestination(env, dstKinds)
			o.kind, o.w = o.d.desc, o.d.w
		}
		outs[i], dsts[i] = o, o.w
		desc += " " + o.kind
	}
	delay := time.Duration(rng.IntN(4000)) * time.Microsecond
	t.Log(desc)
	defer fzWatchdog(t, desc)()
	if src.start != nil {
		src.start()
	}
	for _, o := range outs {
		if o.d != nil && o.d.startReader != nil {
			o.d.startReader()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evWG := fzSchedule(ev, delay, cancel, eng)
	res := eng.e.FanOut(ctx, src.r, dsts, opts...)
	evWG.Wait()
	anyDone := false
	for i, o := range outs {
		r := res[i]
		d := fmt.Sprintf("%s: destination %d (%s): Written %d, err %v", desc, i, o.kind, r.Written, r.Err)
		t.Log(d)
		if r.Written < 0 || r.Written > int64(len(src.want)) {
			t.Errorf("%s: out of range", d)
			continue
		}
		switch o.kind {
		case "fail":
			if int64(o.buf.Len()) != r.Written || !bytes.Equal(o.buf.Bytes(), src.want[:o.buf.Len()]) {
				t.Errorf("%s: the writer took %d bytes (first diff %d)", d, o.buf.Len(), fzDiff(o.buf.Bytes(), src.want))
			}
			if r.Err == nil && o.limit < len(src.want) {
				t.Errorf("%s: nil error from a writer that failed", d)
			}
			if r.Err != nil && o.limit < len(src.want) && !errors.Is(r.Err, errFail) && ev == evNone {
				t.Errorf("%s: want the writer's error", d)
			}
		case "closedpipe":
			if r.Err == nil && len(src.want) > 0 || r.Err != nil && ev == evNone && !errors.Is(r.Err, syscall.EPIPE) {
				t.Errorf("%s: want EPIPE", d)
			}
		case "closedfile":
			if r.Err == nil && len(src.want) > 0 || r.Err != nil && ev == evNone && !errors.Is(r.Err, os.ErrClosed) {
				t.Errorf("%s: want os.ErrClosed", d)
			}
		default:
			fzVerify(t, d, src.forDest(), o.d, ev, r.Written, r.Err)
			if r.Err == nil {
				anyDone = true
			}
		}
	}
	if anyDone {
		src.check(t, int64(len(src.want)), nil)
	}
}

// forDest is the source as one destination of a fan-out sees it: its
// state is checked once, by the caller.
func (s *fzSrc) forDest() *fzSrc {
	c := &fzSrc{desc: s.desc, want: s.want, payload: s.payload}
	return c
}

// fzPreStep builds one random copy twice, identically, with an end closed
// (or the destination's reader gone) before the copy, and runs io.Copy
// on one and the engine on the other: n and the error under errors.Is
// must agree, and so must what the destination holds.
func fzPreStep(t *testing.T, rng *rand.Rand, engines []fzEngine) {
	eng := engines[rng.IntN(len(engines))]
	seed := rng.Uint64()
	what := rng.IntN(7)
	method := []string{"copy", "ctx", "async", "batch"}[rng.IntN(4)]
	type outcome struct {
		n    int64
		err  error
		got  []byte
		desc string
	}
	run := func(useEngine bool) (o outcome, ok bool) {
		env := newFzEnv(t, rand.New(rand.NewPCG(seed, 4)))
		dst := fzDestination(env, fzDstKinds)
		maxSize := 1<<20 + 7
		if dst.message {
			maxSize = 65535
		}
		src := fzSource(env, fzSize(env.rng, maxSize), fzSrcKinds)
		switch what {
		case 0:
			if src.closeIt == nil {
				return o, false
			}
			src.closeIt()
			o.desc = "closed " + src.desc + " -> " + dst.desc
		case 1:
			// (Not with nothing to write: io.Copy's answer then
			// depends on whether Go tried a zero-copy path on the
			// file before its first read, which os.File's
			// ReadFrom does for some sources and not others.)
			if dst.closeIt == nil || len(src.want) == 0 {
				return o, false
			}
			dst.closeIt()
			o.desc = src.desc + " -> closed " + dst.desc
		case 2:
			// (Not TCP: how much a write into a socket whose peer
			// is gone takes depends on when the peer's reset comes.)
			if dst.startReader == nil || strings.HasPrefix(dst.desc, "tcp") {
				return o, false
			}
			o.desc = src.desc + " -> " + dst.desc + " with its reader gone"
		case 3:
			dw, ok := fzUnwrapW(dst.w).(fzWriteDeadliner)
			if !ok || !fzPollable(fzUnwrapW(dst.w)) {
				return o, false
			}
			dw.SetWriteDeadline(time.Now().Add(-time.Second))
			o.desc = src.desc + " -> " + dst.desc + " past its write deadline"
		case 5:
			// A regular file not open for writing: EBADF.
			path := filepath.Join(t.TempDir(), "readonly")
			if err := os.WriteFile(path, []byte("before"), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			env.closeAll(f)
			dst = &fzDst{desc: "read-only file", w: f, finish: func() []byte {
				b, _ := os.ReadFile(path)
				return b
			}}
			o.desc = src.desc + " -> " + dst.desc
		case 6:
			// A regular file not open for reading: EBADF.
			path := filepath.Join(t.TempDir(), "writeonly")
			if err := os.WriteFile(path, src.want, 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			env.closeAll(f)
			src = &fzSrc{desc: "write-only file", r: f, want: src.want}
			if env.rng.IntN(2) == 0 {
				src.r = &io.LimitedReader{R: f, N: int64(len(src.want))}
				src.desc += "+limit"
			}
			o.desc = src.desc + " -> " + dst.desc
		case 4:
			sr, ok := fzUnwrapR(src.r).(fzReadDeadliner)
			if !ok || !fzPollable(fzUnwrapR(src.r)) {
				return o, false
			}
			sr.SetReadDeadline(time.Now().Add(-time.Second))
			o.desc = src.desc + " past its read deadline -> " + dst.desc
		}
		o.desc += fmt.Sprintf(", %d bytes", len(src.want))
		if useEngine {
			o.desc += ", " + method + " on " + eng.name
		}
		defer fzWatchdog(t, o.desc)()
		if src.start != nil {
			src.start()
		}
		if what == 2 {
			dst.closeR()
		} else if dst.startReader != nil {
			dst.startReader()
		}
		if !useEngine {
			r := src.r
			if _, ok := fzUnwrapR(r).(net.Conn); ok {
				// Not Go's own splice from a socket: it keeps a
				// pipe of its cache, which the descriptor check
				// would count.
				r = onlyReader{r}
			}
			o.n, o.err = io.Copy(dst.w, r)
		} else {
			switch method {
			case "copy":
				o.n, o.err = eng.e.Copy(dst.w, src.r)
			case "ctx":
				o.n, o.err = eng.e.CopyContext(context.Background(), dst.w, src.r)
			case "async":
				o.n, o.err = eng.e.CopyAsync(context.Background(), dst.w, src.r).Wait()
			case "batch":
				r := eng.e.CopyBatch(context.Background(), []Pair{{dst.w, src.r}})
				o.n, o.err = r[0].Written, r[0].Err
			}
		}
		if what != 1 && what != 2 {
			o.got = dst.finish()
		}
		return o, true
	}
	var want, got outcome
	var ok bool
	if want, ok = run(false); !ok {
		t.Skip("no such end to close")
	}
	got, _ = run(true)
	t.Logf("%s: io.Copy: %d, %v; engine: %d, %v", got.desc, want.n, want.err, got.n, got.err)
	if got.n != want.n {
		t.Errorf("%s: n = %d, io.Copy's %d (err %v; io.Copy's %v)", got.desc, got.n, want.n, got.err, want.err)
	}
	if (got.err == nil) != (want.err == nil) {
		t.Errorf("%s: err = %v, io.Copy's %v", got.desc, got.err, want.err)
	}
	for _, target := range fzErrTargets {
		if errors.Is(want.err, target) && !errors.Is(got.err, target) {
			t.Errorf("%s: err = %v, not %v as io.Copy's %v is", got.desc, got.err, target, want.err)
		}
	}
	if !bytes.Equal(got.got, want.got) {
		t.Errorf("%s: the destination holds %d bytes, io.Copy's %d", got.desc, len(got.got), len(want.got))
	}
}
