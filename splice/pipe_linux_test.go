//go:build linux

package splice

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
	"golang.org/x/sys/unix"
)

func TestNewPipeSize(t *testing.T) {
	fdtest.Check(t)
	for _, size := range []int{0, 4096, 64 << 10, 1 << 20} {
		p, err := NewPipe(size)
		if err != nil {
			t.Fatal(err)
		}
		got, err := unix.FcntlInt(uintptr(p.WriteFd()), unix.F_GETPIPE_SZ, 0)
		if err != nil || got != p.Size() {
			t.Errorf("NewPipe(%d): Size %d, kernel says %d (%v)", size, p.Size(), got, err)
		}
		if size > 0 && p.Size() < size {
			t.Errorf("NewPipe(%d) as root: got %d", size, p.Size())
		}
		for _, fd := range []int{p.ReadFd(), p.WriteFd()} {
			fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
			fdfl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
			if fl&unix.O_NONBLOCK == 0 || fdfl&unix.FD_CLOEXEC == 0 {
				t.Errorf("fd %d: flags %#x, fd flags %#x", fd, fl, fdfl)
			}
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
}

func TestPoolCapsSize(t *testing.T) {
	p := NewPool(1<<30, 0)
	defer p.Close()
	if m := pipeMaxSize(); m > 0 && p.Stats().Size != m {
		t.Errorf("size %d, want pipe-max-size %d", p.Stats().Size, m)
	}
	if p.Stats().Max != DefaultMaxPipes {
		t.Errorf("max %d", p.Stats().Max)
	}
	if NewPool(0, 0).Stats().Size != min(DefaultPipeSize, max(pipeMaxSize(), DefaultPipeSize)) {
		t.Error("default size")
	}
}

// TestPoolBounded runs many more copies than pipes: all complete, and no
// more than the bound are ever alive.
func TestPoolBounded(t *testing.T) {
	fdtest.Check(t)
	const maxPipes, copies = 3, 24
	pool := NewPool(64<<10, maxPipes)
	defer pool.Close()
	data := fdtest.Random(1<<20 + 3)
	var peak atomic.Int64
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		for {
			if a := int64(pool.Stats().Alive); a > peak.Load() {
				peak.Store(a)
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, copies)
	for i := 0; i < copies; i++ {
		f := tempFile(t, data)
		a, b := connPair(t, "unix")
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := make(chan []byte, 1)
			go func() { g, _ := io.ReadAll(b); got <- g }()
			n, handled, err := Copy(context.Background(), endOf(t, a.(syscall.Conn), false), endOf(t, f, true), -1, pool)
			a.Close()
			g := <-got
			if err != nil || !handled || n != int64(len(data)) || !bytes.Equal(g, data) {
				errs <- fmt.Errorf("copy: %d, %v, %v; peer got %d", n, handled, err, len(g))
			}
		}()
	}
	fdtest.Within(t, 30*time.Second, wg.Wait)
	close(stop)
	watch.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := pool.Stats()
	if peak.Load() > maxPipes || st.Created > maxPipes || st.InUse != 0 {
		t.Errorf("peak %d alive, stats %+v; bound %d", peak.Load(), st, maxPipes)
	}
	if st.Waits == 0 {
		t.Logf("no Get waited: %+v", st)
	}
}

func TestPoolGetWaitsAndCancels(t *testing.T) {
	fdtest.Check(t)
	pool := NewPool(4096, 1)
	p1, err := pool.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := pool.Get(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get with all pipes out: %v", err)
	}
	got := make(chan *Pipe)
	go func() {
		p, _ := pool.Get(context.Background())
		got <- p
	}()
	time.Sleep(10 * time.Millisecond)
	pool.Put(p1)
	p2 := <-got
	if p2 != p1 {
		t.Error("the waiting Get did not get the pipe put back")
	}
	// Closing a pool pipe instead of putting it frees its slot.
	go func() {
		p, _ := pool.Get(context.Background())
		got <- p
	}()
	time.Sleep(10 * time.Millisecond)
	p2.Close()
	p3 := <-got
	if p3 == nil || p3 == p2 {
		t.Fatal("no new pipe after Close")
	}
	pool.Put(p3)
	if err := pool.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Get(context.Background()); !errors.Is(err, ErrPoolClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if st := pool.Stats(); st.Alive != 0 {
		t.Errorf("after Close: %+v", st)
	}
}

// TestPoolNoStaleBytes: a pipe put back holding bytes (whether Copy knew
// about them or not) is closed, and Get never returns bytes.
func TestPoolNoStaleBytes(t *testing.T) {
	fdtest.Check(t)
	pool := NewPool(4096, 2)
	defer pool.Close()
	p, _ := pool.Get(context.Background())
	unix.Write(p.WriteFd(), []byte("stale")) // behind Buffered's back
	pool.Put(p)
	p2, _ := pool.Get(context.Background())
	p2.data = 3 // Copy thinks it left bytes
	pool.Put(p2)
	st := pool.Stats()
	if st.Discarded != 2 || st.Idle != 0 || st.Alive != 0 {
		t.Fatalf("stats %+v, want 2 discarded, none idle", st)
	}
	for i := 0; i < 3; i++ {
		q, err := pool.Get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := unix.IoctlGetInt(q.ReadFd(), unix.TIOCINQ); n != 0 || q.Buffered() != 0 {
			t.Fatalf("Get returned a pipe with %d bytes", n)
		}
		pool.Put(q)
	}
	// A copy cut short with bytes in the intermediate pipe must not
	// return it to the pool: dst refuses (EPIPE) after a partial write.
	f := tempFile(t, fdtest.Random(8<<20))
	a, b := connPair(t, "unix")
	go func() { b.Read(make([]byte, 1000)); b.Close() }()
	_, _, err := Copy(context.Background(), endOf(t, a.(syscall.Conn), false), endOf(t, f, true), -1, pool)
	if err == nil {
		t.Fatal("copy to a closed peer succeeded")
	}
	for i := 0; i < 2; i++ {
		q, _ := pool.Get(context.Background())
		if n, _ := unix.IoctlGetInt(q.ReadFd(), unix.TIOCINQ); n != 0 {
			t.Fatalf("Get after a failed copy returned a pipe with %d bytes", n)
		}
		defer pool.Put(q)
	}
}

const unprivEnv = "PIPES_SPLICE_TEST_UNPRIVILEGED"

// TestPoolUnprivileged re-runs the pool under uid/gid 65534: past the
// per-user pipe quota (/proc/sys/fs/pipe-user-pages-soft) F_SETPIPE_SZ
// fails with EPERM and new pipes get two pages; the pool must keep
// working with what the kernel gives.
func TestPoolUnprivileged(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "pipes-unpriv")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "splice.test")
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), unprivEnv+"=1", "TMPDIR="+os.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil {
		t.Fatalf("unprivileged child: %v", err)
	}
}

// unprivChild runs in the re-executed binary as uid 65534.
func unprivChild() int {
	fail := func(format string, args ...any) int {
		fmt.Printf("FAIL: "+format+"\n", args...)
		return 1
	}
	if os.Getuid() != 65534 {
		return fail("uid %d", os.Getuid())
	}
	soft, _ := os.ReadFile("/proc/sys/fs/pipe-user-pages-soft")
	fmt.Printf("uid %d, pipe-user-pages-soft %s", os.Getuid(), soft)
	const n = 80 // 80 MiB of 1 MiB pipes: past the 64 MiB default quota
	pool := NewPool(1<<20, n)
	defer pool.Close()
	var pipes []*Pipe
	sizes := map[int]int{}
	for i := 0; i < n; i++ {
		p, err := pool.Get(context.Background())
		if err != nil {
			return fail("Get %d: %v", i, err)
		}
		sizes[p.Size()]++
		pipes = append(pipes, p)
	}
	st := pool.Stats()
	fmt.Printf("pipe sizes: %v; stats %+v\n", sizes, st)
	small := pipes[len(pipes)-1]
	if small.Size() >= 1<<20 || st.Shrunk == 0 {
		fmt.Println("note: the quota did not bite (pipe-user-pages-soft raised?)")
	}
	// Copy through the smallest pipe: file -> unix socket, byte-exact.
	data := fdtest.Random(4<<20 + 17)
	dir, err := os.MkdirTemp("", "child")
	if err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(dir)
	f, err := os.Create(filepath.Join(dir, "src"))
	if err != nil {
		return fail("%v", err)
	}
	defer f.Close()
	f.Write(data)
	f.Seek(0, io.SeekStart)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fail("%v", err)
	}
	a, b := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
	defer b.Close()
	got := make(chan []byte, 1)
	go func() { g, _ := io.ReadAll(b); got <- g }()
	// Put every pipe back but the small one, whose slot the copy then reuses
	// through a pool bounded to it.
	for _, p := range pipes {
		pool.Put(p)
	}
	one := &Pool{size: 1 << 20, max: 1}
	sp, err := one.Get(context.Background())
	if err != nil {
		return fail("%v", err)
	}
	fmt.Printf("copy pipe size %d\n", sp.Size())
	one.Put(sp)
	ra, _ := a.SyscallConn()
	rf, _ := f.SyscallConn()
	w, handled, err := Copy(context.Background(), &End{Conn: ra}, &End{Conn: rf}, -1, one)
	a.Close()
	g := <-got
	one.Close()
	if err != nil || !handled || w != int64(len(data)) || !bytes.Equal(g, data) {
		return fail("copy through a degraded pipe: %d, %v, %v; peer got %d", w, handled, err, len(g))
	}
	fmt.Println("ok")
	return 0
}
