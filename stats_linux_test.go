//go:build !pipes_portable

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

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
	"github.com/pipes-go/pipes/internal/uring"
)

// userspaceBy is the part of Stats that says why copies went to userspace.
type userspaceBy struct{ total, noFD, fileToFile, refused uint64 }

func userspaceOf(s Stats) userspaceBy {
	return userspaceBy{s.Userspace, s.UserspaceNoFD, s.UserspaceFileToFile, s.UserspaceRefused}
}

// TestStatsUserspaceReasons copies between pairs the kernel path does not
// take, one per reason, and checks that each is counted under its reason
// only, that Userspace is their sum, and that the bytes still arrive.
// Pairs the kernel takes count no fallback.
func TestStatsUserspaceReasons(t *testing.T) {
	data := fdtest.Random(200<<10 + 3)
	small := data[:100] // one datagram
	for _, ec := range engineCases(t) {
		t.Run(ec.name, func(t *testing.T) {
			for _, tc := range []struct {
				name string
				want userspaceBy
				run  func(t *testing.T, e *Engine)
			}{
				{"reader->tcp", userspaceBy{1, 1, 0, 0}, func(t *testing.T, e *Engine) {
					s := sinkKinds[3].make(t)
					copyAndCheck(t, e, s, onlyReader{bytes.NewReader(data)}, data)
				}},
				{"file->writer", userspaceBy{1, 1, 0, 0}, func(t *testing.T, e *Engine) {
					src := fileSource(t, data)
					defer src.close()
					copyAndCheck(t, e, sinkKinds[5].make(t), src.r, data)
				}},
				{"file->unixgram", userspaceBy{1, 1, 0, 0}, func(t *testing.T, e *Engine) {
					src := fileSource(t, small)
					defer src.close()
					a, b := unixgramPair(t)
					defer a.Close()
					defer b.Close()
					if n, err := e.Copy(a, src.r); n != int64(len(small)) || err != nil {
						t.Fatalf("copy = (%d, %v)", n, err)
					}
					got := make([]byte, 2*len(small))
					if n, err := b.Read(got); err != nil || !bytes.Equal(got[:n], small) {
						t.Fatalf("the datagram holds %d bytes (%v), want the %d sent", n, err, len(small))
					}
				}},
				{"directory->pipe", userspaceBy{1, 1, 0, 0}, func(t *testing.T, e *Engine) {
					d, err := os.Open(t.TempDir())
					if err != nil {
						t.Fatal(err)
					}
					defer d.Close()
					s := sinkKinds[1].make(t)
					if _, err := e.Copy(s.w, d); !errors.Is(err, syscall.EISDIR) {
						t.Fatalf("copy from a directory: %v, want EISDIR as io.Copy gives", err)
					}
					s.finish()
				}},
				{"file->file", userspaceBy{1, 0, 1, 0}, func(t *testing.T, e *Engine) {
					src := fileSource(t, data)
					defer src.close()
					copyAndCheck(t, e, fileSink(t), src.r, data)
				}},
				{"file->append", userspaceBy{1, 0, 0, 1}, func(t *testing.T, e *Engine) {
					src := fileSource(t, data)
					defer src.close()
					path := filepath.Join(t.TempDir(), "log")
					f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
					if err != nil {
						t.Fatal(err)
					}
					n, err := e.Copy(appendOnlyFile{f}, src.r)
					f.Close()
					if got, _ := os.ReadFile(path); n != int64(len(data)) || err != nil || !bytes.Equal(got, data) {
						t.Fatalf("copy = (%d, %v), the file holds %d bytes, want %d", n, err, len(got), len(data))
					}
				}},
				{"proc->pipe", userspaceBy{1, 0, 0, 1}, func(t *testing.T, e *Engine) {
					// /proc/self/cmdline is a regular file whose
					// splice_read the kernel refuses with EINVAL.
					want, err := os.ReadFile("/proc/self/cmdline")
					if err != nil {
						t.Skip(err)
					}
					f, err := os.Open("/proc/self/cmdline")
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					copyAndCheck(t, e, sinkKinds[1].make(t), f, want)
				}},
				{"relay net.Pipe", userspaceBy{2, 2, 0, 0}, func(t *testing.T, e *Engine) {
					a, peerA := net.Pipe()
					b, peerB := net.Pipe()
					defer a.Close()
					defer b.Close()
					go func() { peerA.Write([]byte("ping")); peerA.Close() }()
					go func() { io.ReadFull(peerB, make([]byte, 4)); peerB.Close() }()
					// Both directions end at EOF, the peers having
					// closed (net.Pipe has no CloseWrite to pass on).
					if up, down, err := e.Relay(context.Background(), a, b); up != 4 || down != 0 || err != nil {
						t.Fatalf("relay = (%d, %d, %v)", up, down, err)
					}
				}},
				{"fanout reader", userspaceBy{1, 1, 0, 0}, func(t *testing.T, e *Engine) {
					s := sinkKinds[3].make(t)
					res := e.FanOut(context.Background(), onlyReader{bytes.NewReader(data)}, []io.Writer{s.w})
					if n, sum := s.finish(); res[0].Err != nil || n != int64(len(data)) || sum != sha256.Sum256(data) {
						t.Fatalf("fan-out = %+v, destination got %d bytes", res, n)
					}
				}},
				{"tcp->tcp", userspaceBy{}, func(t *testing.T, e *Engine) {
					src := sourceKinds[4].make(t, data)
					defer src.close()
					copyAndCheck(t, e, sinkKinds[3].make(t), src.r, data)
				}},
				{"file->pipe", userspaceBy{}, func(t *testing.T, e *Engine) {
					src := fileSource(t, data)
					defer src.close()
					copyAndCheck(t, e, sinkKinds[1].make(t), src.r, data)
				}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					fdtest.Check(t)
					e := newTestEngine(t, ec.opts...)
					tc.run(t, e)
					st := e.Stats()
					if got := userspaceOf(st); got != tc.want {
						t.Fatalf("userspace {total noFD fileToFile refused} = %+v, want %+v (stats %+v)", got, tc.want, st)
					}
				})
			}
		})
	}
}

// copyAndCheck copies src to s with e.Copy and checks s got data.
func copyAndCheck(t *testing.T, e *Engine, s sink, src io.Reader, data []byte) {
	t.Helper()
	n, err := e.Copy(s.w, src)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("copy = (%d, %v), want %d bytes", n, err, len(data))
	}
	if got, sum := s.finish(); got != n || sum != sha256.Sum256(data) {
		t.Fatalf("destination got %d bytes, differing from the %d sent", got, len(data))
	}
}

// unixgramPair returns a connected pair of unix datagram sockets.
func unixgramPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	return fdtest.SocketPair(t, syscall.SOCK_DGRAM)
}

// TestStatsRingSetup checks Stats.RingSetup: empty on io_uring, "disabled
// by ..." when splice was asked for, and the setup error, with the errno's
// name and cause, when io_uring could not be set up (simulated with the
// setup hook, as TestRingRefusedFallsBack does).
func TestStatsRingSetup(t *testing.T) {
	fdtest.Check(t)
	if s := newTestEngine(t, WithBackend(BackendSplice)).Stats().RingSetup; s != "disabled by WithBackend(splice)" {
		t.Errorf("WithBackend(splice): RingSetup %q", s)
	}

	refuse := func(err error) Option {
		return func(c *config) { c.setupHook = func() error { return err } }
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("io_uring_setup: %w", unix.EPERM), "io_uring_setup: operation not permitted (EPERM: kernel.io_uring_disabled or a seccomp filter)"},
		{fmt.Errorf("io_uring_setup: %w", unix.ENOSYS), "io_uring_setup: function not implemented (ENOSYS: a kernel without io_uring, or a seccomp filter)"},
		{fmt.Errorf("io_uring_setup: %w", unix.ENOMEM), "io_uring_setup: cannot allocate memory (ENOMEM: RLIMIT_MEMLOCK too low for the ring (before Linux 5.12), or out of memory)"},
		{fmt.Errorf("eventfd: %w", unix.EMFILE), "eventfd: too many open files (EMFILE)"},
		{uring.ErrNoSplice, "io_uring lacks IORING_OP_SPLICE (Linux 5.7)"},
	} {
		e := newTestEngine(t, WithBackend(backendAuto), refuse(tc.err))
		if e.Backend() != BackendSplice {
			t.Fatalf("%v: backend %q, want splice", tc.err, e.Backend())
		}
		if s := e.Stats().RingSetup; s != tc.want {
			t.Errorf("%v: RingSetup %q, want %q", tc.err, s, tc.want)
		}
		// A required io_uring fails with the same explanation, still
		// wrapping the errno.
		_, err := NewEngine(WithBackend(BackendIOUring), refuse(tc.err))
		if err == nil || !strings.HasSuffix(err.Error(), tc.want) || !errors.Is(err, tc.err) {
			t.Errorf("required io_uring refused with %v: error %v", tc.err, err)
		}
		var errno syscall.Errno
		if errors.As(tc.err, &errno) && !errors.Is(err, errno) {
			t.Errorf("required io_uring refused with %v: error %v does not wrap %v", tc.err, err, errno)
		}
	}

	// The real engine: empty exactly when on io_uring.
	e := newTestEngine(t)
	s := e.Stats().RingSetup
	switch {
	case e.Backend() == BackendIOUring && s != "":
		t.Errorf("on io_uring, RingSetup %q, want empty", s)
	case e.Backend() != BackendIOUring && s == "":
		t.Errorf("on %s, RingSetup is empty", e.Backend())
	}
	t.Logf("backend %s, RingSetup %q", e.Backend(), s)

	t.Setenv("PIPES_BACKEND", "splice")
	if s := newTestEngine(t).Stats().RingSetup; s != "disabled by PIPES_BACKEND=splice" {
		t.Errorf("PIPES_BACKEND=splice: RingSetup %q", s)
	}
	// WithBackend wins over PIPES_BACKEND, and says so.
	if s := newTestEngine(t, WithBackend(BackendSplice)).Stats().RingSetup; s != "disabled by WithBackend(splice)" {
		t.Errorf("PIPES_BACKEND=splice and WithBackend(splice): RingSetup %q", s)
	}

	// An engine whose NewEngine failed (DefaultEngine's) tells why.
	b := brokenEngine(errors.New("pipes: io_uring backend: nope"))
	if s := b.Stats().RingSetup; s != "pipes: io_uring backend: nope" {
		t.Errorf("broken engine: RingSetup %q", s)
	}
}

// TestStatsAllocs: taking a snapshot allocates nothing, so a metrics
// scrape or an expvar page can call Stats as often as it likes.
func TestStatsAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	e := newTestEngine(t)
	var st Stats
	if a := testing.AllocsPerRun(100, func() { st = e.Stats() }); a != 0 {
		t.Errorf("Stats: %v allocations, want 0", a)
	}
	_ = st
}

// TestStatsInFlightWithinCopies snapshots Stats while copies start: a
// copy counted in InFlight is counted in Copies, in every snapshot. The
// copies wait until the snapshots are done, so every copy started is in
// flight and a snapshot that counted one in InFlight but not in Copies
// would show InFlight > Copies.
func TestStatsInFlightWithinCopies(t *testing.T) {
	copies := 20000
	if raceEnabled {
		copies = 4000 // the race detector's limit is 8128 goroutines
	}
	e := newTestEngine(t)
	release := make(chan struct{})
	src := readerFunc(func(p []byte) (int, error) {
		<-release
		return 0, io.EOF
	})
	started := make(chan []*Future)
	go func() {
		fs := make([]*Future, 0, copies)
		for range copies {
			fs = append(fs, e.CopyAsync(context.Background(), io.Discard, src))
		}
		started <- fs
	}()
	var bad Stats
	for fs := []*Future(nil); fs == nil; {
		select {
		case fs = <-started:
			close(release)
			for _, f := range fs {
				if _, err := f.Wait(); err != nil {
					t.Fatal(err)
				}
			}
		default:
			if st := e.Stats(); uint64(st.InFlight) > st.Copies {
				bad = st
			}
		}
	}
	if bad.InFlight != 0 {
		t.Fatalf("a snapshot has InFlight %d > Copies %d", bad.InFlight, bad.Copies)
	}
}

// readerFunc is an io.Reader made of a function.
type readerFunc func(p []byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
