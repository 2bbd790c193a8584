//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

var stressCopies = flag.Int("stress.copies", 0, "concurrent copies in TestManyConcurrentCopies (0: 10000, or 1000 under -race)")

// TestBackendSelection checks PIPES_BACKEND and WithBackend, and that the
// probe does not hide a kernel that should have io_uring.
func TestBackendSelection(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t, WithBackend(BackendSplice))
	if e.Backend() != BackendSplice {
		t.Fatalf("WithBackend(splice) gave %q", e.Backend())
	}
	env, _ := backendFromEnv()
	d := newTestEngine(t)
	switch env {
	case BackendSplice:
		if d.Backend() != BackendSplice {
			t.Fatalf("PIPES_BACKEND=splice gave %q", d.Backend())
		}
	default:
		r, err := NewEngine(WithBackend(BackendIOUring))
		if err != nil {
			if !errors.Is(err, errors.ErrUnsupported) {
				t.Fatalf("io_uring engine error %v does not wrap errors.ErrUnsupported", err)
			}
			if kernelAtLeast(5, 7) && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.ENOSYS) {
				t.Fatalf("io_uring refused on a %s kernel for a reason other than policy: %v", kernelRelease(), err)
			}
			t.Skipf("io_uring unavailable here: %v", err)
		}
		r.Close()
		if d.Backend() != BackendIOUring {
			t.Fatalf("auto picked %q though io_uring works", d.Backend())
		}
	}
	t.Setenv("PIPES_BACKEND", "bogus")
	if _, err := NewEngine(); err == nil {
		t.Fatal("PIPES_BACKEND=bogus accepted")
	}
	// WithBackend overrides PIPES_BACKEND, a bad value too.
	if o := newTestEngine(t, WithBackend(BackendSplice)); o.Backend() != BackendSplice {
		t.Fatalf("WithBackend(splice) with PIPES_BACKEND=bogus gave %q", o.Backend())
	}
}

// TestRingRefusedFallsBack simulates io_uring_setup failing with ENOSYS
// (old kernel) and EPERM (seccomp, io_uring_disabled): auto falls back to
// a working splice engine; a required io_uring fails with both
// errors.ErrUnsupported and the errno.
func TestRingRefusedFallsBack(t *testing.T) {
	fdtest.Check(t)
	for _, errno := range []syscall.Errno{unix.ENOSYS, unix.EPERM} {
		refuse := func(c *config) { c.setupHook = func() error { return fmt.Errorf("io_uring_setup: %w", errno) } }
		e := newTestEngine(t, WithBackend(backendAuto), refuse)
		if e.Backend() != BackendSplice {
			t.Fatalf("%v: backend %q, want splice", errno, e.Backend())
		}
		src := fileSource(t, fdtest.Random(1<<20))
		dst := sinkKinds[3].make(t)
		if n, err := e.CopyAsync(context.Background(), dst.w, src.r).Wait(); n != 1<<20 || err != nil {
			t.Fatalf("%v: copy on the fallback engine = (%d, %v)", errno, n, err)
		}
		src.close()
		dst.finish()
		_, err := NewEngine(WithBackend(BackendIOUring), refuse)
		if !errors.Is(err, errors.ErrUnsupported) || !errors.Is(err, errno) {
			t.Fatalf("required io_uring refused with %v: error %v should wrap ErrUnsupported and the errno", errno, err)
		}
	}
}

// TestStatsCountRingBatches checks that ring copies are counted and share
// io_uring_enter calls: to a pipe, reads that miss the page cache go
// through the ring and reads that hit it do not; to a socket, every copy
// sends with sendfile(2), and the chunks of a cold file are first read
// into the page cache by the ring (a READ each, beside the FILES_UPDATE
// ops that pin the file) while those of a hot one are not.
func TestStatsCountRingBatches(t *testing.T) {
	for _, sk := range sinkKinds {
		if sk.name != "pipe" && sk.name != "unix" && sk.name != "tcp" {
			continue
		}
		t.Run(sk.name, func(t *testing.T) {
			fdtest.Check(t)
			e := newTestEngine(t, WithRingMinConcurrency(0))
			if e.Backend() != BackendIOUring {
				t.Skipf("backend is %s", e.Backend())
			}
			const copies, size = 64, 256 << 10
			var futures []*Future
			var sinks []sink
			for i := 0; i < copies; i++ {
				src := fileSource(t, fdtest.Random(size)) // evicted from the page cache
				defer src.close()
				f := src.r.(*os.File)
				if i%2 == 1 {
					io.Copy(io.Discard, f) // read it back into the cache
					f.Seek(0, io.SeekStart)
				}
				if i == 0 && fdtest.CachedPages(t, f, size) > 0 {
					t.Skip("the page cache cannot be dropped for files in TMPDIR (tmpfs?)")
				}
				s := sk.make(t)
				sinks = append(sinks, s)
				futures = append(futures, e.CopyAsync(context.Background(), s.w, f))
			}
			for i, f := range futures {
				if n, err := f.Wait(); n != size || err != nil {
					t.Fatalf("copy %d = (%d, %v)", i, n, err)
				}
				if n, sum := sinks[i].finish(); n != size {
					t.Fatalf("copy %d: destination got %d bytes (%x)", i, n, sum[:4])
				}
			}
			st := e.Stats()
			if st.Copies != copies || st.Bytes != copies*size || st.InFlight != 0 {
				t.Fatalf("stats %+v: want %d copies of 256 KiB", st, copies)
			}
			if sk.name == "pipe" && st.Ring != copies {
				t.Fatalf("stats %+v: want %d ring copies", st, copies)
			}
			if st.CQEs < st.SQEs || st.Enters == 0 || st.Enters > st.SQEs {
				t.Fatalf("stats %+v: SQEs, CQEs and enters inconsistent", st)
			}
			if sk.name == "pipe" {
				// Each cold copy needs a ring read (unless readahead
				// got there first), each hot one reads from the cache.
				if st.SQEs < copies/4 || st.Cached < copies/2 {
					t.Fatalf("stats %+v: want ring reads for cold files and cached reads for hot ones", st)
				}
			} else if st.Sendfile != copies || st.Ring != 0 || st.Warmed < copies/4 || st.SQEs < st.Warmed || st.Cached < copies/2 {
				// Every copy sends with sendfile(2); each cold
				// file is read in by the ring (unless readahead got
				// there first), each hot one is not.
				t.Fatalf("stats %+v: want cold files read in by the ring (a READ a chunk), hot ones not, all sent with sendfile", st)
			}
			t.Logf("%d SQEs in %d io_uring_enter calls, %d reads from the page cache", st.SQEs, st.Enters, st.Cached)
		})
	}
}

// TestManyConcurrentCopies runs thousands of CopyAsync between unix
// sockets at once, every byte checked, with the engine's pipes bounded.
// As root it also runs itself again as an unprivileged user, whose pipe
// quota (pipe-user-pages-soft) the pool must live within.
func TestManyConcurrentCopies(t *testing.T) {
	n := *stressCopies
	if n == 0 {
		n = 10000
		if raceEnabled {
			n = 1000
		}
	}
	if testing.Short() {
		n = 200
	}
	raiseNoFile(t, n*6/5+1000) // 2*(hops+1) descriptors per 2*hops copies
	fdtest.Check(t)
	runManyCopies(t, n)

	if os.Getuid() == 0 && os.Getenv("PIPES_TEST_UNPRIVILEGED") == "" {
		t.Run("unprivileged", func(t *testing.T) {
			runUnprivileged(t, "^TestManyConcurrentCopies$", "-stress.copies="+strconv.Itoa(n))
		})
	}
}

// runManyCopies starts n copies at once over unix stream sockets and
// checks every byte. To stay within RLIMIT_NOFILE (20000 on the CI
// machines, not raisable) the copies form chains: a group of hops uses
// hops+1 socketpairs, each socket end being the source of one copy and the
// destination of another, with one stream flowing each way:
//
//	x0 =fwd=> y0 -copy-> x1 => y1 -copy-> x2 ... yG   (and back: yG => xG -copy-> y(G-1) ...)
//
// A chain only completes if every hop makes progress while the others
// wait: pooled pipes must not be held by copies that wait for input.
func runManyCopies(t *testing.T, n int) {
	e := newTestEngine(t)
	const hops = 5 // per direction: a group runs 2*hops copies
	groups := (n + 2*hops - 1) / (2 * hops)
	var wg sync.WaitGroup
	errs := make(chan error, 8*groups)
	for g := 0; g < groups; g++ {
		xs := make([]*net.UnixConn, hops+1)
		ys := make([]*net.UnixConn, hops+1)
		for k := range xs {
			xs[k], ys[k] = unixPair(t)
		}
		fwdData := fdtest.Random(16<<10 + g)
		bwdData := fdtest.Random(8<<10 + 3*g)
		fwd := make([]*Future, hops)
		bwd := make([]*Future, hops)
		for k := 0; k < hops; k++ {
			fwd[k] = e.CopyAsync(context.Background(), xs[k+1], ys[k])
			bwd[k] = e.CopyAsync(context.Background(), ys[k], xs[k+1])
		}
		// Each direction: feed one end, read the other, and pass EOF
		// down the chain as each hop finishes.
		stream := func(name string, in *net.UnixConn, data []byte, out *net.UnixConn, futs []*Future, next func(k int) *net.UnixConn) {
			wg.Add(3)
			go func() {
				defer wg.Done()
				if _, err := in.Write(data); err != nil {
					errs <- fmt.Errorf("group %d %s: feeding: %w", g, name, err)
				}
				in.CloseWrite()
			}()
			go func() {
				defer wg.Done()
				got, err := io.ReadAll(out)
				if err != nil {
					errs <- fmt.Errorf("group %d %s: reading: %w", g, name, err)
				} else if !bytes.Equal(got, data) {
					errs <- fmt.Errorf("group %d %s: got %d bytes, want %d (hash match %v)", g, name, len(got), len(data), sha256.Sum256(got) == sha256.Sum256(data))
				}
			}()
			go func() {
				defer wg.Done()
				for k, f := range futs {
					written, err := f.Wait()
					if err != nil || written != int64(len(data)) {
						errs <- fmt.Errorf("group %d %s hop %d = (%d, %v), want %d bytes", g, name, k, written, err, len(data))
					}
					next(k).CloseWrite()
				}
			}()
		}
		stream("forward", xs[0], fwdData, ys[hops], fwd, func(k int) *net.UnixConn { return xs[k+1] })
		stream("backward", ys[hops], bwdData, xs[0], reverse(bwd), func(k int) *net.UnixConn { return ys[hops-1-k] })
		t.Cleanup(func() {
			for k := range xs {
				xs[k].Close()
				ys[k].Close()
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		t.Fatalf("copies still running after 5 minutes: %+v", e.Stats())
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := e.Stats()
	if st.Copies != uint64(2*hops*groups) || st.InFlight != 0 {
		t.Errorf("stats after %d copies: %+v", 2*hops*groups, st)
	}
	if st.Pipes > DefaultMaxPipes {
		t.Errorf("%d pipes alive, more than the bound %d", st.Pipes, DefaultMaxPipes)
	}
	t.Logf("%d copies: %+v", 2*hops*groups, st)
}

func reverse(fs []*Future) []*Future {
	r := make([]*Future, len(fs))
	for i, f := range fs {
		r[len(fs)-1-i] = f
	}
	return r
}

// raiseNoFile lifts RLIMIT_NOFILE to at least n where the hard limit (or
// root) allows it, and skips the test where it cannot.
func raiseNoFile(t *testing.T, n int) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= uint64(n) {
		return
	}
	old := lim
	lim.Cur = uint64(n)
	if lim.Max < lim.Cur {
		lim.Max = lim.Cur
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("need %d descriptors, limit %d: %v", n, old.Cur, err)
	}
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &old) })
}

// skipUnlessRerunner skips a test that re-runs what (other tests) as uid
// 65534 unless it runs as root, not re-run itself, and not in -short.
func skipUnlessRerunner(t *testing.T, what string) {
	if os.Getuid() != 0 || os.Getenv("PIPES_TEST_UNPRIVILEGED") != "" {
		t.Skip("runs as root, to re-run " + what + " as uid 65534")
	}
	if testing.Short() {
		t.Skip("short")
	}
}

// runUnprivileged runs the tests matching run in a copy of this test
// binary as uid/gid 65534, and fails if they fail there.
func runUnprivileged(t *testing.T, run string, args ...string) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "pipes-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "pipes.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"-test.run=" + run, "-test.v"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PIPES_TEST_UNPRIVILEGED=1", "TMPDIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("as uid 65534: %v\n%s", err, tail(out, 4000))
	}
	if !bytes.Contains(out, []byte("--- PASS")) {
		t.Fatalf("as uid 65534, no test passed:\n%s", tail(out, 4000))
	}
	t.Logf("as uid 65534:\n%s", tail(out, 1500))
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// kernelAtLeast reports whether the running kernel is major.minor or newer.
func kernelAtLeast(major, minor int) bool {
	var maj, min int
	fmt.Sscanf(kernelRelease(), "%d.%d", &maj, &min)
	return maj > major || maj == major && min >= minor
}

// TestManyRingChains runs hundreds of concurrent copies of cold files to
// sockets, their chunks read in by ring chains on a tiny ring (4 SQEs, 8
// CQEs: chains are submitted one at a time and the CQ overflows) with 8
// pipes, a fifth of them cancelled mid-copy. Every completed destination must hold the file
// byte for byte; every cancelled one exactly the prefix the copy reported,
// with the file offset right after it.
func TestManyRingChains(t *testing.T) {
	n := 256
	if raceEnabled || testing.Short() {
		n = 96
	}
	raiseNoFile(t, 8*n+1000)
	fdtest.Check(t)
	e := newTestEngine(t, WithRingMinConcurrency(0), WithRingEntries(4), WithMaxPipes(8))
	if e.Backend() != BackendIOUring {
		t.Skipf("backend is %s", e.Backend())
	}
	skipUnlessRingReadsTempDir(t)
	const files = 16
	datas := make([][]byte, files)
	for i := range datas {
		datas[i] = fdtest.Random(1<<20 + 1 + i*(97<<10)) // above the pipe size: several chunks
	}
	type job struct {
		data   []byte
		f      *os.File
		s      sink
		future *Future
		cancel context.CancelFunc
	}
	jobs := make([]*job, n)
	for i := range jobs {
		data := datas[i%files]
		src := fileSource(t, data)
		t.Cleanup(src.close)
		kind := sinkKinds[4] // unix
		if i%4 == 3 {
			kind = sinkKinds[3] // tcp
		}
		ctx, cancel := context.WithCancel(context.Background())
		var s sink
		if i%5 == 4 {
			// Not read until the copy has ended: the socket fills and
			// the copy waits for room when the cancel comes.
			s = stalledSink(t)
		} else {
			s = kind.make(t)
		}
		j := &job{data: data, f: src.r.(*os.File), s: s, cancel: cancel}
		j.future = e.CopyAsync(ctx, j.s.w, j.f)
		jobs[i] = j
	}
	time.Sleep(20 * time.Millisecond)
	for i, j := range jobs {
		if i%5 == 4 {
			j.cancel()
		}
	}
	cancelled := 0
	for i, j := range jobs {
		written, err := waitFuture(t, j.future)
		j.cancel()
		got, sum := j.s.finish()
		if got != written {
			t.Fatalf("copy %d: reported %d bytes, destination got %d", i, written, got)
		}
		if sum != sha256.Sum256(j.data[:written]) {
			t.Fatalf("copy %d: the %d bytes delivered differ from the file's", i, written)
		}
		if off, _ := j.f.Seek(0, io.SeekCurrent); off != written {
			t.Fatalf("copy %d: file offset %d after %d bytes", i, off, written)
		}
		switch {
		case err == nil && written == int64(len(j.data)):
		case i%5 == 4 && errors.Is(err, context.Canceled):
			cancelled++
		default:
			t.Fatalf("copy %d = (%d, %v) of %d bytes", i, written, err, len(j.data))
		}
	}
	st := e.Stats()
	if st.InFlight != 0 || st.SQEs == 0 || st.CQEs < st.SQEs {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("%d copies, %d cancelled before the end: %+v", n, cancelled, st)
}

// stalledSink is a unix socket that nobody reads until finish, which
// closes the copy's end and then reads and hashes everything it holds.
func stalledSink(t *testing.T) sink {
	a, b := unixPair(t)
	t.Cleanup(func() { a.Close(); b.Close() })
	return sink{a, func() (int64, [32]byte) {
		a.Close()
		h := &hashWriter{h: sha256.New()}
		if _, err := io.Copy(h, b); err != nil {
			t.Errorf("reading the stalled destination: %v", err)
		}
		return h.n, h.sum()
	}}
}

// TestCachedSendsTakeTurns: concurrent copies of files in the page cache
// to sockets send their chunks under the engine's turns on the io_uring
// engine (Stats.CachedSendTurns), with one turn as with the default
// GOMAXPROCS, and with none where WithSendTurns says so or on the splice
// engine, which has no Warmer; every byte arrives either way.
func TestCachedSendsTakeTurns(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backend Backend
		opts    []Option
		turns   bool
	}{
		{"io_uring", BackendIOUring, nil, true},
		{"io_uring/one-turn", BackendIOUring, []Option{WithSendTurns(1)}, true},
		{"io_uring/no-turns", BackendIOUring, []Option{WithSendTurns(-1)}, false},
		{"splice", BackendSplice, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fdtest.Check(t)
			opts := append([]Option{WithRingMinConcurrency(0)}, tc.opts...)
			if tc.backend == BackendSplice {
				// io_uring is not asked for by name: NewEngine would
				// fail where the kernel refuses it, instead of skipping.
				opts = append(opts, WithBackend(BackendSplice))
			}
			e := newTestEngine(t, opts...)
			if e.Backend() != tc.backend {
				t.Skipf("backend is %s", e.Backend())
			}
			if tc.turns {
				skipUnlessRingReadsTempDir(t) // no Warmer there: no turns
			}
			const copies, size = 4, 8 << 20
			var futures []*Future
			var sinks []sink
			for range copies {
				f := fdtest.TempFile(t, fdtest.Random(size))
				io.Copy(io.Discard, f) // in the page cache
				f.Seek(0, io.SeekStart)
				a, b := unixPair(t)
				sinks = append(sinks, drainInto(t, a, b))
				futures = append(futures, e.CopyAsync(context.Background(), a, f))
			}
			for i, f := range futures {
				if n, err := f.Wait(); n != size || err != nil {
					t.Fatalf("copy %d = (%d, %v)", i, n, err)
				}
				if n, _ := sinks[i].finish(); n != size {
					t.Fatalf("copy %d: destination got %d bytes", i, n)
				}
			}
			turns := e.Stats().CachedSendTurns
			if tc.turns && turns < copies || !tc.turns && turns != 0 {
				t.Errorf("%d sends took turns (%d copies of %d MiB in the page cache)", turns, copies, size>>20)
			}
		})
	}
}
