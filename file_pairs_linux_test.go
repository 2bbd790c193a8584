//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Copies between two *os.File of every kind, which the engine first
// offers to copy_file_range(2) as a copy of no bytes (filesFirst) and
// hands to io.Copy where the kernel takes the pair. Each must leave what
// io.Copy leaves (count, error class, destination bytes, both offsets,
// LimitedReader.N), and count under Stats.UserspaceFileToFile exactly
// when both ends are regular files.

// adv33fFile opens a new file in dir holding data, with flag, at off.
func adv33fFile(t *testing.T, dir string, data []byte, flag int, off int64) *os.File {
	t.Helper()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f := openPath(t, path, flag)
	if off != 0 && flag&unix.O_PATH == 0 {
		atOffset(t, f, off)
	}
	return f
}

// shmDir is a directory on tmpfs (/dev/shm), another file system than
// t.TempDir()'s where that is on a disk; removed when the test ends.
func shmDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "adv33f")
	if err != nil {
		t.Skipf("tmpfs: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// socketFile is one end of a unix stream socketpair as an *os.File
// (os.NewFile, in blocking mode), its peer fed data and closed.
func socketFile(t *testing.T, data []byte) *os.File {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := newFD(t, fds[0], nil, "socketpair")
	feedQuietly(t, os.NewFile(uintptr(fds[1]), "socketpair-peer"), data)
	return f
}

// tcpFile is the file of a TCP connection (TCPConn.File: a dup in
// blocking mode) whose peer writes data and closes.
func tcpFile(t *testing.T, data []byte) *os.File {
	a, b := tcpPair(t)
	f, err := a.File()
	a.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	feedQuietly(t, b, data)
	return f
}

// pidFile is a pidfd of this process as an *os.File: fstat(2) reports
// it of no type, and reads and writes of it fail (EINVAL).
func pidFile(t *testing.T) *os.File {
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	return newFD(t, fd, err, "pidfd")
}

// closedFile is an *os.File already closed.
func closedFile(t *testing.T) *os.File {
	f := adv33fFile(t, t.TempDir(), nil, os.O_RDWR, 0)
	f.Close()
	return f
}

// adv33fSrc and adv33fDst wrap an *os.File factory as the adv8 kinds.
func adv33fSrc(name string, limit int64, open func(t *testing.T, data []byte) *os.File) adv8Src {
	return adv8Src{name, func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
		f := open(t, data)
		if f == nil {
			if limit >= 0 {
				return &io.LimitedReader{R: f, N: limit}, func() (int64, int64) { return -1, -1 }
			}
			return f, func() (int64, int64) { return -1, -1 }
		}
		return fileAt(t, f, 0, limit)
	}}
}

func adv33fDst(name string, open func(t *testing.T) *os.File) adv8Dst {
	return adv8Dst{name, func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
		f := open(t)
		if f == nil {
			return f, func() ([]byte, int64) { return nil, -1 }
		}
		if !isRegular(f) {
			return f, func() ([]byte, int64) { return nil, fileOff(f) }
		}
		return f, func() ([]byte, int64) { return fdContents(t, f), fileOff(f) }
	}}
}

// adv33fSources are *os.File sources of every kind, some behind an
// *io.LimitedReader.
func adv33fSources() []adv8Src {
	disk := func(flag int, off int64) func(t *testing.T, data []byte) *os.File {
		return func(t *testing.T, data []byte) *os.File { return adv33fFile(t, t.TempDir(), data, flag, off) }
	}
	dev := func(path string, off int64) func(t *testing.T, data []byte) *os.File {
		return func(t *testing.T, data []byte) *os.File {
			f := openPath(t, path, os.O_RDONLY)
			if off > 0 {
				atOffset(t, f, off)
			}
			return f
		}
	}
	return []adv8Src{
		adv33fSrc("disk", -1, disk(os.O_RDONLY, 0)),
		adv33fSrc("disk@4097/N=70001", 70001, disk(os.O_RDONLY, 4097)),
		adv33fSrc("disk@beyond-EOF", -1, disk(os.O_RDONLY, 1<<20)),
		adv33fSrc("disk/N=0", 0, disk(os.O_RDONLY, 0)),
		adv33fSrc("disk-wronly", -1, disk(os.O_WRONLY, 0)),
		adv33fSrc("disk-opath", -1, disk(unix.O_PATH, 0)),
		adv33fSrc("shm", -1, func(t *testing.T, data []byte) *os.File {
			return adv33fFile(t, shmDir(t), data, os.O_RDONLY, 0)
		}),
		adv33fSrc("memfd@3", -1, func(t *testing.T, data []byte) *os.File {
			f := memfd(t, data, 0)
			atOffset(t, f, 3)
			return f
		}),
		adv33fSrc("memfd-sealed", -1, func(t *testing.T, data []byte) *os.File {
			f := memfd(t, data, unix.MFD_ALLOW_SEALING)
			if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_GROW|unix.F_SEAL_SHRINK); err != nil {
				t.Skipf("F_ADD_SEALS: %v", err)
			}
			return f
		}),
		adv33fSrc("dir", -1, func(t *testing.T, data []byte) *os.File { return openPath(t, t.TempDir(), os.O_RDONLY) }),
		adv33fSrc("proc-version@5", -1, dev("/proc/version", 5)),
		adv33fSrc("sys-online", -1, dev("/sys/devices/system/cpu/online", 0)),
		adv33fSrc("dev-zero/N=100001", 100001, dev("/dev/zero", 0)),
		adv33fSrc("dev-null", -1, dev("/dev/null", 0)),
		adv33fSrc("pipe", -1, fedPipe),
		adv33fSrc("fifo", -1, func(t *testing.T, data []byte) *os.File {
			r, w := fifoPair(t)
			t.Cleanup(func() { r.Close() })
			feedQuietly(t, w, data)
			return r
		}),
		adv33fSrc("socketpair", -1, socketFile),
		adv33fSrc("tcp-file", -1, tcpFile),
		adv33fSrc("closed", -1, func(t *testing.T, data []byte) *os.File { return closedFile(t) }),
		adv33fSrc("pidfd", -1, func(t *testing.T, data []byte) *os.File { return pidFile(t) }),
		adv33fSrc("nil", -1, func(t *testing.T, data []byte) *os.File { return nil }),
		adv33fSrc("nil/N=10", 10, func(t *testing.T, data []byte) *os.File { return nil }),
	}
}

// adv33fDests are *os.File destinations of every kind.
func adv33fDests() []adv8Dst {
	disk := func(flag int, off int64) func(t *testing.T) *os.File {
		return func(t *testing.T) *os.File { return adv33fFile(t, t.TempDir(), adv8Prefix, flag, off) }
	}
	sealed := func(seals int, off int64) func(t *testing.T) *os.File {
		return func(t *testing.T) *os.File {
			f := memfd(t, adv8Prefix[:4096], unix.MFD_ALLOW_SEALING)
			if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
				t.Skipf("F_ADD_SEALS: %v", err)
			}
			atOffset(t, f, off)
			return f
		}
	}
	pipeDst := func(fifo bool) func(t *testing.T) *os.File {
		return func(t *testing.T) *os.File {
			var r, w *os.File
			if fifo {
				r, w = fifoPair(t)
			} else {
				var err error
				if r, w, err = os.Pipe(); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan struct{})
			go func() { io.Copy(io.Discard, r); close(done) }()
			t.Cleanup(func() { w.Close(); <-done; r.Close() })
			return w
		}
	}
	return []adv8Dst{
		adv33fDst("disk@3", disk(os.O_RDWR, 3)),
		adv33fDst("disk-wronly@beyond-EOF", disk(os.O_WRONLY, int64(len(adv8Prefix))+4099)),
		adv33fDst("disk-append", disk(os.O_WRONLY|os.O_APPEND, 3)),
		adv33fDst("disk-rdonly", disk(os.O_RDONLY, 0)),
		adv33fDst("disk-opath", disk(unix.O_PATH, 0)),
		adv33fDst("disk-o-direct@4096", disk(os.O_RDWR|syscall.O_DIRECT, 4096)),
		adv33fDst("shm@5", func(t *testing.T) *os.File { return adv33fFile(t, shmDir(t), adv8Prefix, os.O_RDWR, 5) }),
		adv33fDst("memfd@7", func(t *testing.T) *os.File {
			f := memfd(t, adv8Prefix, 0)
			atOffset(t, f, 7)
			return f
		}),
		adv33fDst("memfd-seal-write", sealed(unix.F_SEAL_WRITE, 0)),
		adv33fDst("memfd-seal-future-write@100", sealed(unix.F_SEAL_FUTURE_WRITE, 100)),
		adv33fDst("memfd-seal-grow@4000", sealed(unix.F_SEAL_GROW, 4000)),
		adv33fDst("dev-null", func(t *testing.T) *os.File { return openPath(t, "/dev/null", os.O_WRONLY) }),
		adv33fDst("pipe", pipeDst(false)),
		adv33fDst("fifo", pipeDst(true)),
		adv33fDst("dir", func(t *testing.T) *os.File { return openPath(t, t.TempDir(), os.O_RDONLY) }),
		adv33fDst("closed", closedFile),
		adv33fDst("pidfd", pidFile),
		adv33fDst("nil", func(t *testing.T) *os.File { return nil }),
	}
}

// adv33fOther are pairs where the engine leaves something else than
// io.Copy for reasons older than, and apart from, filesFirst: pairs
// with a device or socket source, which never reach copy_file_range(2)
// as a pair of regular files. Each is a pair, or a source with any
// destination ("src->*").
var adv33fOther = map[string]string{
	// The kernel path reads /dev/zero into a pipe before it meets the
	// destination's refusal, and cannot put those bytes back: its
	// LimitedReader.N counts them (docs/design.md, "Cancellation").
	"dev-zero/N=100001->*": "bytes read and not delivered",
	// io.Copy meets the destination's refusal first, in its ReadFrom
	// (copy_file_range(2): EISDIR, EBADF, os.ErrClosed); the engine
	// reads first, and an empty source ends the copy before any write.
	"dev-null->dir":        "io.Copy's copy_file_range error",
	"dev-null->disk-opath": "io.Copy's copy_file_range error",
	"dev-null->closed":     "io.Copy's copy_file_range error",
	// io.Copy fails in copy_file_range(2) with EISDIR, the engine's
	// userspace copy in write(2) with EBADF.
	"socketpair->dir": "io.Copy's copy_file_range error",
	// The engine returns before it looks at the destination.
	"disk/N=0->nil": "a limit of 0 returns at once",
	// What an O_DIRECT file takes depends on the lengths the socket's
	// reads return (TestAdv8Descriptors queues them first).
	"tcp-file->disk-o-direct@4096": "lengths of socket reads",
}

// bothRegular reports whether fstat(2) finds both r (unwrapped from an
// *io.LimitedReader) and w to be regular files (S_IFREG: os.FileMode's
// IsRegular holds for a file of no type too, a pidfd).
func bothRegular(w io.Writer, r io.Reader) bool {
	if lr, ok := r.(*io.LimitedReader); ok {
		r = lr.R
	}
	return isRegular(r) && isRegular(w)
}

// isRegular reports whether v is an *os.File whose st_mode is S_IFREG.
func isRegular(v any) bool {
	f, ok := v.(*os.File)
	if !ok || f == nil {
		return false
	}
	var st unix.Stat_t
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	if rc.Control(func(fd uintptr) { err = unix.Fstat(int(fd), &st) }) != nil || err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFREG
}

// TestAdv33fFilePairs copies between every pair of the kinds above with
// io.Copy, then with Copy and CopyContext of each engine, and wants what
// io.Copy left; and UserspaceFileToFile counted once for each copy
// between two regular files with something to copy, and for no other.
func TestAdv33fFilePairs(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(150<<10 + 7)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		copies := []struct {
			name string
			copy func(io.Writer, io.Reader) (int64, error)
		}{
			{"Copy", e.Copy},
			{"CopyContext", func(w io.Writer, r io.Reader) (int64, error) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				return e.CopyContext(ctx, w, r)
			}},
		}
		for _, src := range adv33fSources() {
			for _, dst := range adv33fDests() {
				for _, c := range copies {
					t.Run(fmt.Sprintf("%s/%s/%s->%s", ec.name, c.name, src.name, dst.name), func(t *testing.T) {
						for _, k := range []string{src.name + "->" + dst.name, src.name + "->*"} {
							if why, ok := adv33fOther[k]; ok {
								t.Skip(why)
							}
						}
						want := adv8Run(t, src, dst, data, io.Copy)
						var regular bool
						before := e.Stats()
						got := adv8Run(t, src, dst, data, func(w io.Writer, r io.Reader) (int64, error) {
							regular = bothRegular(w, r)
							return c.copy(w, r)
						})
						after := e.Stats()
						if what := adv8Same(want, got); what != "" {
							t.Errorf("%s differs:\n  pipes   %v\n  io.Copy %v", what, got, want)
						}
						f2f := after.UserspaceFileToFile - before.UserspaceFileToFile
						if src.name == "pidfd" && dst.name == "pidfd" {
							// pidfs's inodes are S_IFREG in the kernel,
							// which takes the pair (a copy of no bytes
							// answers 0), and of no type to fstat(2),
							// which the classification went by: either
							// count is taken. The copy is io.Copy's
							// either way, and fails as it does (EINVAL).
							return
						}
						if wantF2F := regular && got.limit != 0; f2f != map[bool]uint64{false: 0, true: 1}[wantF2F] {
							t.Errorf("UserspaceFileToFile counted %d, want %v (both regular files: %v)", f2f, wantF2F, regular)
						}
					})
				}
			}
		}
	}
}

// TestAdv33fSameFile copies a file into itself: through one *os.File
// (one offset for both ends), and through two opens of one path whose
// ranges overlap, which copy_file_range(2) refuses (EINVAL) and io.Copy
// then copies with read(2) and write(2). Limits keep the copies whose
// destination runs ahead of their source finite. Each must leave what
// io.Copy leaves, and count as a copy between two regular files. (A
// source reading up to a destination at its end, with no limit, grows
// the file until the disk is full, under io.Copy as under the engine.)
func TestAdv33fSameFile(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(100<<10 + 13)
	type pair struct {
		name string
		make func(t *testing.T) (w io.Writer, r io.Reader, state func() adv8After)
	}
	same := func(mem bool, off, limit int64) func(t *testing.T) (io.Writer, io.Reader, func() adv8After) {
		return func(t *testing.T) (io.Writer, io.Reader, func() adv8After) {
			f := memfd(t, data, 0)
			if !mem {
				f = adv33fFile(t, t.TempDir(), data, os.O_RDWR, 0)
			}
			atOffset(t, f, off)
			r, rs := fileAt(t, f, 0, limit)
			return f, r, func() adv8After {
				var a adv8After
				a.srcOff, a.lrN = rs()
				a.got, a.dstOff = fdContents(t, f), fileOff(f)
				return a
			}
		}
	}
	twice := func(srcOff, dstOff, limit int64) func(t *testing.T) (io.Writer, io.Reader, func() adv8After) {
		return func(t *testing.T) (io.Writer, io.Reader, func() adv8After) {
			dir := t.TempDir()
			f := adv33fFile(t, dir, data, os.O_RDONLY, srcOff)
			g := openPath(t, f.Name(), os.O_WRONLY)
			atOffset(t, g, dstOff)
			r, rs := fileAt(t, f, 0, limit)
			return g, r, func() adv8After {
				var a adv8After
				a.srcOff, a.lrN = rs()
				a.got, a.dstOff = fdContents(t, g), fileOff(g)
				return a
			}
		}
	}
	pairs := []pair{
		{"one-file@0", same(false, 0, -1)},
		{"one-file@4096", same(false, 4096, -1)},
		{"one-file@4096/N=5000", same(false, 4096, 5000)},
		{"one-memfd@77", same(true, 77, -1)},
		{"two-opens/src@0/dst@0", twice(0, 0, -1)},
		{"two-opens/src@4096/dst@0", twice(4096, 0, -1)},
		{"two-opens/src@0/dst@100/N=300001", twice(0, 100, 300001)},
		{"two-opens/src@0/dst@end/N=70000", twice(0, int64(len(data)), 70000)},
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, p := range pairs {
			t.Run(ec.name+"/"+p.name, func(t *testing.T) {
				run := func(copy func(io.Writer, io.Reader) (int64, error)) adv8After {
					w, r, state := p.make(t)
					start, limit := fileOff(srcFileOf(r)), int64(-1)
					if lr, ok := r.(*io.LimitedReader); ok {
						limit = lr.N
					}
					n, err := copy(w, r)
					a := state()
					a.n, a.err, a.start, a.limit = n, err, start, limit
					return a
				}
				want := run(io.Copy)
				before := e.Stats()
				got := run(e.Copy)
				f2f := e.Stats().UserspaceFileToFile - before.UserspaceFileToFile
				if what := adv8Same(want, got); what != "" {
					t.Errorf("%s differs:\n  pipes   %v\n  io.Copy %v", what, got, want)
				}
				if f2f != 1 {
					t.Errorf("UserspaceFileToFile counted %d, want 1", f2f)
				}
			})
		}
	}
}

// srcFileOf is the *os.File r reads, under an *io.LimitedReader.
func srcFileOf(r io.Reader) *os.File {
	if lr, ok := r.(*io.LimitedReader); ok {
		r = lr.R
	}
	f, _ := r.(*os.File)
	return f
}

// TestAdv33fNotStarted copies between two regular files that the kernel
// takes with a context already cancelled, with CopyContext and
// CopyAsync, and on a closed engine: each fails before it touches the
// files (ctx.Err(), ErrClosed), as before the pair was offered to
// copy_file_range(2), and counts no fallback. A paced copy between the
// same files (a RateLimitedReader) is left to io.Copy and delivers every
// byte.
func TestAdv33fNotStarted(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(70<<10 + 1)
	ends := func(t *testing.T) (dst, src *os.File, check func(n int64)) {
		src = adv33fFile(t, t.TempDir(), data, os.O_RDONLY, 5)
		dst = adv33fFile(t, t.TempDir(), adv8Prefix, os.O_RDWR, 3)
		return dst, src, func(n int64) {
			t.Helper()
			if off := fileOff(src); off != 5+n {
				t.Errorf("source offset %d, want %d", off, 5+n)
			}
			if off := fileOff(dst); off != 3+n {
				t.Errorf("destination offset %d, want %d", off, 3+n)
			}
		}
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, ec := range engineCases(t) {
		for _, c := range []struct {
			name string
			want error
			copy func(e *Engine, w io.Writer, r io.Reader) (int64, error)
		}{
			{"CopyContext", context.Canceled, func(e *Engine, w io.Writer, r io.Reader) (int64, error) {
				return e.CopyContext(cancelled, w, r)
			}},
			{"CopyAsync", context.Canceled, func(e *Engine, w io.Writer, r io.Reader) (int64, error) {
				return e.CopyAsync(cancelled, w, r).Wait()
			}},
			{"closed-engine", ErrClosed, func(e *Engine, w io.Writer, r io.Reader) (int64, error) {
				if err := e.Close(); err != nil {
					t.Fatal(err)
				}
				return e.Copy(w, r)
			}},
		} {
			t.Run(ec.name+"/"+c.name, func(t *testing.T) {
				e := newTestEngine(t, ec.opts...)
				dst, src, check := ends(t)
				n, err := c.copy(e, dst, src)
				if n != 0 || !errors.Is(err, c.want) {
					t.Errorf("(%d, %v), want (0, %v)", n, err, c.want)
				}
				check(0)
				if got := fdContents(t, dst); !bytes.Equal(got, adv8Prefix) {
					t.Errorf("the destination holds %d bytes, changed", len(got))
				}
				if u := userspaceOf(e.Stats()); u != (userspaceBy{}) {
					t.Errorf("fallbacks counted: %+v", u)
				}
			})
		}
		t.Run(ec.name+"/paced", func(t *testing.T) {
			e := newTestEngine(t, ec.opts...)
			dst, src, check := ends(t)
			n, err := e.Copy(dst, RateLimit(src, NewLimiter(1<<40, 0)))
			if n != int64(len(data)-5) || err != nil {
				t.Errorf("(%d, %v), want (%d, nil)", n, err, len(data)-5)
			}
			check(n)
			if got := fdContents(t, dst); !bytes.Equal(got[3:], data[5:]) {
				t.Errorf("the destination holds other bytes")
			}
			if u := userspaceOf(e.Stats()); u != (userspaceBy{1, 0, 1, 0}) {
				t.Errorf("fallbacks counted: %+v, want one file -> file", u)
			}
		})
	}
}
