package fdtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// SocketPair returns the two ends of a connected unix socketpair of type
// typ (syscall.SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET) as *net.UnixConn
// on Go's netpoller.
func SocketPair(t testing.TB, typ int) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, typ|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// TempFile writes data to a new file in t's temporary directory and
// returns it open for reading; it is closed when the test ends.
func TempFile(t testing.TB, data []byte) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// Evict drops f's pages from the page cache (fsync, then
// POSIX_FADV_DONTNEED), so that reads of it go to the disk. On file
// systems that keep everything in memory (tmpfs) it does nothing: check
// with CachedPages.
func Evict(t testing.TB, f *os.File) {
	t.Helper()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
}

// CachedPages returns how many pages of the first size bytes of f are in
// the page cache, by cachestat(2), which starts no I/O; it skips the test
// where the kernel lacks cachestat (Linux 6.5). Not a preadv2(RWF_NOWAIT)
// probe: one that misses starts the kernel's readahead, and the code
// under test would then find the pages the check brought in. It skips
// the test for a file on overlayfs too, whose pages are the backing
// file's: cachestat counts none of them there, cached or not.
func CachedPages(t testing.TB, f *os.File, size int64) uint64 {
	t.Helper()
	// Not internal/uring's MayRead, whose tests import this package.
	var fs unix.Statfs_t
	if unix.Fstatfs(int(f.Fd()), &fs) == nil && fs.Type == unix.OVERLAYFS_SUPER_MAGIC {
		t.Skip("the test's files are on overlayfs, whose pages cachestat(2) does not count")
	}
	var st unix.Cachestat_t
	if err := unix.Cachestat(uint(f.Fd()), &unix.CachestatRange{Len: uint64(size)}, &st, 0); err != nil {
		t.Skipf("cachestat: %v", err)
	}
	return st.Cache
}

// DirectRefusesUnaligned skips t unless an O_DIRECT file in t's
// temporary directory refuses a write of a length no block size divides
// (EINVAL), as ext4 and xfs do: btrfs, and tmpfs, write such a length
// through the page cache instead and take it. It is for tests of what a
// copy does once the file refuses its bytes.
func DirectRefusesUnaligned(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "probe"), os.O_WRONLY|os.O_CREATE|syscall.O_DIRECT, 0o600)
	if err != nil {
		t.Skipf("O_DIRECT: %v", err)
	}
	defer f.Close()
	// An aligned buffer: only the length is unaligned.
	b, err := unix.Mmap(-1, 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	switch _, err := f.Write(b[:100]); {
	case err == nil:
		t.Skip("an O_DIRECT file here takes a write of 100 bytes; the test needs one that refuses it")
	case !errors.Is(err, syscall.EINVAL):
		t.Fatalf("a write of 100 bytes to an O_DIRECT file: %v; want EINVAL or success", err)
	}
}

// Overlay mounts an overlayfs whose lower layer holds a file named data
// holding data, and returns where it is mounted; it skips the test where
// it cannot mount one (not root, no overlayfs). It is unmounted when the
// test ends.
func Overlay(t testing.TB, data []byte) string {
	t.Helper()
	// Not t.TempDir: a test's name may hold a comma, which ends an
	// overlayfs option.
	dir, err := os.MkdirTemp("", "overlay")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	lower, upper, work, merged := filepath.Join(dir, "lower"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	for _, p := range []string{lower, upper, work, merged} {
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(lower, "data"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Skipf("mount overlayfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
	return merged
}

// SparseTmpfsFile makes a file of size bytes, all of it a hole, on the
// tmpfs at /dev/shm, and returns its path; it skips the test where there
// is no tmpfs there. The file is removed when the test ends.
func SparseTmpfsFile(t testing.TB, size int64) string {
	t.Helper()
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) != nil || st.Type != unix.TMPFS_MAGIC {
		t.Skip("no tmpfs at /dev/shm")
	}
	dir, err := os.MkdirTemp("/dev/shm", "sparse")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "sparse")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	return path
}

// SendOOB sends one byte of TCP urgent data ('!', MSG_OOB) on c: a
// reader's splice stops at its mark.
func SendOOB(t testing.TB, c *net.TCPConn) {
	t.Helper()
	if err := SendOOBByte(c, '!'); err != nil {
		t.Fatalf("send MSG_OOB: %v", err)
	}
}

// SendOOBByte sends b with MSG_OOB on the stream socket c: TCP's urgent
// byte, or a unix stream socket's out-of-band byte.
func SendOOBByte(c net.Conn, b byte) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return fmt.Errorf("MSG_OOB on a %T: no descriptor", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Send(int(fd), []byte{b}, unix.MSG_OOB) }); err != nil {
		return err
	}
	return serr
}

// Spinning reports whether the process kept most of a core busy (three
// quarters) over each of three windows of d in a row, and the CPU time
// of the last window it measured: something in it spins where it should
// wait. One quiet window answers no. A spinning loop is busy in every
// window; the runtime's own work after a large transfer (a collection,
// the race detector's) can fill one window, but not three.
func Spinning(d time.Duration) (time.Duration, bool) {
	var cpu time.Duration
	for range 3 {
		var before, after syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &before)
		time.Sleep(d)
		syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		cpu = time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
		if cpu <= d*3/4 {
			return cpu, false
		}
	}
	return cpu, true
}
