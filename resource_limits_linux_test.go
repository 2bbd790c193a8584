//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Copies into destinations that take fewer bytes than they are given (a
// file system that fills up, a FUSE server that answers a write with 0
// bytes written, a file size limit), and engines made with few
// descriptors to spare.

// adv24Engines are the engine cases of engineCases, and the splice
// backend.
func adv24Engines(t *testing.T) []engineCase {
	return append(engineCases(t), engineCase{"splice", []Option{WithBackend(BackendSplice)}})
}

// adv24Sources are the sources of adv8Sources named in names.
func adv24Sources(names ...string) []adv8Src {
	var srcs []adv8Src
	for _, s := range adv8Sources() {
		if slices.Contains(names, s.name) {
			srcs = append(srcs, s)
		}
	}
	return srcs
}

// smallTmpfs mounts a tmpfs of size bytes on a new directory and returns
// the directory; it is unmounted when the test ends. It skips the test
// where it cannot mount one (not root).
func smallTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// fullFSDst is a destination file on a tmpfs of 256 KiB of its own,
// written from offset off, behind a connFile where conn is set (so that
// the engine writes it with splice(2) from a regular file too).
func fullFSDst(off int64, conn bool) func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
	return func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
		path := filepath.Join(smallTmpfs(t, 256<<10), "dst")
		f := openPath(t, path, os.O_RDWR|os.O_CREATE)
		atOffset(t, f, off)
		return fileDst(f, conn, func() ([]byte, int64) { return fdContents(t, f), fileOff(f) })
	}
}

// TestAdv24FullFileSystem copies 1 MiB into a file on a file system of
// 256 KiB: the write that fills it is short, the next fails with
// ENOSPC. Every copy must leave what io.Copy leaves: its count, the
// error (ENOSPC), the file's bytes and offset, and the source's offset
// and LimitedReader.N as adv8Same allows.
func TestAdv24FullFileSystem(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(1 << 20)
	srcs := adv24Sources("pipe", "unix", "pipe-limited", "file@0/N=-1", "file@4097/N=-1", "memfd@3/N=65537", "memfd@0/N=-1")
	var dsts []adv8Dst
	for _, conn := range []bool{false, true} {
		for _, off := range []int64{0, 5, 100 << 10} {
			name := fmt.Sprintf("tmpfs-256KiB@%d", off)
			if conn {
				name += "-conn"
			}
			dsts = append(dsts, adv8Dst{name, fullFSDst(off, conn)})
		}
	}
	for _, ec := range adv24Engines(t) {
		e := newTestEngine(t, ec.opts...)
		for _, src := range srcs {
			for _, dst := range dsts {
				t.Run(fmt.Sprintf("%s/%s->%s", ec.name, src.name, dst.name), func(t *testing.T) {
					want := adv8Run(t, src, dst, data, io.Copy)
					got := adv8Run(t, src, dst, data, e.Copy)
					if what := adv8Same(want, got); what != "" {
						t.Errorf("%s differs:\n  pipes   %v\n  io.Copy %v", what, got, want)
					}
					if got.err == nil && want.err != nil {
						t.Errorf("pipes reports success, io.Copy %v", want.err)
					}
				})
			}
		}
	}
}

// zeroWriteDst is a destination file on a FUSE file system (direct I/O:
// each write goes to the server) whose server answers every write with
// the bytes it asked to write until it has taken after bytes in all, and
// then with 0 bytes written: write(2) returns 0, which an *os.File's
// Write reports as io.ErrUnexpectedEOF. conn hides the *os.File behind a
// connFile, so that the engine writes it from a regular file too.
func zeroWriteDst(after int64, conn bool) func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
	return func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
		var taken atomic.Int64
		fs := newWriteFS(t, func(size int) int {
			for {
				n := taken.Load()
				k := min(int64(size), max(after-n, 0))
				if taken.CompareAndSwap(n, n+k) {
					return int(k)
				}
			}
		})
		f, err := os.OpenFile(fs.path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return fileDst(f, conn, func() ([]byte, int64) { return nil, fileOff(f) })
	}
}

// TestAdv24ZeroWriteDest copies into a file whose write(2) returns 0
// once its FUSE server stops taking bytes (zeroWriteDst): io.Copy's
// buffer loop fails with io.ErrUnexpectedEOF, having counted the bytes
// the server took. A splice(2) into such a file returns 0 as well, which
// the copy took for the source's EOF: it returned nil with the rest of
// the bytes still in its source.
//
// The reference is io.Copy's buffer loop, with dst's ReaderFrom hidden:
// io.Copy into an *os.File from a socket splices (os.File.ReadFrom), and
// Go's splice, given 0 by the file, fills its pipe and waits for the
// socket forever.
func TestAdv24ZeroWriteDest(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(300<<10 + 1)
	// Not "pipe-limited": io.Copy reads up to a buffer from the pipe
	// that the file does not take, and lowers N by it; the copy leaves
	// the bytes in the pipe, and N as it was.
	srcs := adv24Sources("pipe", "unix", "file@0/N=-1", "file@4097/N=-1", "memfd@3/N=65537")
	var dsts []adv8Dst
	for _, conn := range []bool{false, true} {
		for _, after := range []int64{0, 100 << 10} {
			name := fmt.Sprintf("fuse-zero-after-%d", after)
			if conn {
				name += "-conn"
			}
			dsts = append(dsts, adv8Dst{name, zeroWriteDst(after, conn)})
		}
	}
	ref := func(w io.Writer, r io.Reader) (int64, error) { return io.Copy(struct{ io.Writer }{w}, r) }
	for _, ec := range adv24Engines(t) {
		e := newTestEngine(t, ec.opts...)
		for _, src := range srcs {
			for _, dst := range dsts {
				t.Run(fmt.Sprintf("%s/%s->%s", ec.name, src.name, dst.name), func(t *testing.T) {
					want := adv8Run(t, src, dst, data, ref)
					var got adv8After
					fdtest.Within(t, 20*time.Second, func() { got = adv8Run(t, src, dst, data, e.Copy) })
					if what := adv8Same(want, got); what != "" {
						t.Errorf("%s differs:\n  pipes   %v\n  io.Copy %v", what, got, want)
					}
					if got.err == nil && want.err != nil {
						t.Errorf("pipes reports success, io.Copy %v", want.err)
					}
					if errors.Is(got.err, io.ErrUnexpectedEOF) != errors.Is(want.err, io.ErrUnexpectedEOF) {
						t.Errorf("pipes' error %v, io.Copy's %v: not both io.ErrUnexpectedEOF", got.err, want.err)
					}
				})
			}
		}
	}
}

// adv24Child names the test a child process runs (inChild).
const adv24Child = "PIPES_ADV24_CHILD"

// inChild reports whether t runs in a child process of its own (for
// what changes a limit of the whole process): if not, it runs t in a
// copy of this test binary, fails t if the child fails, and reports
// false, and t should return.
func inChild(t *testing.T) bool {
	if os.Getenv(adv24Child) == t.Name() {
		return true
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^"+t.Name()+"$", "-test.v")
	cmd.Env = append(os.Environ(), adv24Child+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
	return false
}

// TestAdv24NewEngineOutOfDescriptors makes engines (auto, and io_uring
// required) with RLIMIT_NOFILE lowered to leave 0 to 11 descriptors
// free, so that every step of setting a ring up (the ring, its eventfd,
// its registered files) meets EMFILE in one of them: NewEngine must
// give a working engine (auto: the splice backend where the ring could
// not be set up) or, for a required io_uring, an error wrapping
// errors.ErrUnsupported, and leave no descriptor behind either way. It
// runs in a child process: the limit is the process's.
func TestAdv24NewEngineOutOfDescriptors(t *testing.T) {
	if !inChild(t) {
		return
	}
	data := fdtest.Random(1<<20 + 5)
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Skip(err)
	}
	backends := map[string][]Option{"auto": {WithBackend(backendAuto)}, "io_uring": {WithBackend(BackendIOUring)}}
	for free := range uint64(12) {
		for name, opts := range backends {
			before := fdtest.Open()
			lim := old
			lim.Cur = limitLeaving(before, free)
			if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
				t.Skip(err)
			}
			e, err := NewEngine(opts...)
			if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s, %d free: backend %v, %v", name, free, backendOf(e), err)
			switch {
			case err != nil && (name == "auto" || !errors.Is(err, errors.ErrUnsupported)):
				t.Errorf("%s, %d descriptors free: NewEngine: %v", name, free, err)
			case err == nil:
				r, w, perr := os.Pipe()
				if perr != nil {
					t.Fatal(perr)
				}
				a, b := unixPair(t)
				fed := fdtest.WriteAndClose(w, data)
				got := make(chan []byte, 1)
				go func() { all, _ := io.ReadAll(b); got <- all }()
				n, cerr := e.Copy(a, r)
				a.Close()
				if all := <-got; n != int64(len(data)) || cerr != nil || !bytes.Equal(all, data) {
					t.Errorf("%s, %d free: Copy = (%d, %v), destination got %d bytes", name, free, n, cerr, len(all))
				}
				<-fed
				r.Close()
				b.Close()
				if err := e.Close(); err != nil {
					t.Errorf("%s, %d free: Close: %v", name, free, err)
				}
			}
			for fd, target := range fdtest.Open() {
				if prev, ok := before[fd]; !ok || prev != target {
					t.Errorf("%s, %d descriptors free: %s -> %s left open", name, free, fd, target)
				}
			}
		}
	}
}

// limitLeaving returns the RLIMIT_NOFILE below which exactly free
// descriptor numbers are not in open (fdtest.Open).
func limitLeaving(open map[string]string, free uint64) uint64 {
	var lim, left uint64
	for ; ; lim++ {
		if _, ok := open[strconv.FormatUint(lim, 10)]; !ok {
			if left == free {
				return lim
			}
			left++
		}
	}
}

func backendOf(e *Engine) Backend {
	if e == nil {
		return ""
	}
	return e.Backend()
}

// TestAdv24FileSizeLimit copies 1 MiB into files with RLIMIT_FSIZE at
// 200,000 bytes during the copy (in a child process: the limit is the
// process's): the
// write that reaches it is short, the next fails with EFBIG (Go ignores
// SIGXFSZ). Every copy must leave what io.Copy leaves (adv8Same).
func TestAdv24FileSizeLimit(t *testing.T) {
	if !inChild(t) {
		return
	}
	fdtest.Check(t)
	const limit = 200000
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &old); err != nil {
		t.Skip(err)
	}
	lim := old
	lim.Cur = limit
	// The limit holds for the copy alone: the sources are larger.
	under := func(copy func(io.Writer, io.Reader) (int64, error)) func(io.Writer, io.Reader) (int64, error) {
		return func(w io.Writer, r io.Reader) (int64, error) {
			if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &lim); err != nil {
				t.Fatal(err)
			}
			defer unix.Setrlimit(unix.RLIMIT_FSIZE, &old)
			return copy(w, r)
		}
	}
	data := fdtest.Random(1 << 20)
	srcs := adv24Sources("pipe", "unix", "file@0/N=-1", "file@4097/N=-1", "memfd@0/N=-1")
	var dsts []adv8Dst
	for _, d := range adv8Dests() {
		switch d.name {
		case "file@0", "file@3", "conn@0", "conn@10240", "memfd@3", "offsetwriter@0":
			dsts = append(dsts, d)
		}
	}
	for _, ec := range adv24Engines(t) {
		e := newTestEngine(t, ec.opts...)
		for _, src := range srcs {
			for _, dst := range dsts {
				t.Run(fmt.Sprintf("%s/%s->%s", ec.name, src.name, dst.name), func(t *testing.T) {
					want := adv8Run(t, src, dst, data, under(io.Copy))
					got := adv8Run(t, src, dst, data, under(e.Copy))
					if what := adv8Same(want, got); what != "" {
						t.Errorf("%s differs:\n  pipes   %v\n  io.Copy %v", what, got, want)
					}
					if want.err == nil || got.err == nil {
						t.Errorf("pipes (%v), io.Copy (%v): want both to fail (EFBIG)", got.err, want.err)
					}
				})
			}
		}
	}
}
