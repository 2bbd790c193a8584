//go:build !pipes_portable

package pipes

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// slowDisk is an ext4 file system, mounted read-only, on a loop device
// whose backing file (the file system's image) a FUSE server in the test
// serves (newBackedFS): every read the loop device makes reaches the
// server, which answers it at once, or only once the test resumes it
// (Stall, Resume). It stands for a local disk
// that is slow or has stopped answering (a failing disk, a device
// behind a stalled network block device): to the engine its files are
// ext4 files, which the ring reads.
type slowDisk struct {
	dir  string   // where the ext4 file system is mounted
	loop string   // the loop device, /dev/loopN
	img  *os.File // the image, on the test's own disk

	mu   sync.Mutex
	gate chan struct{} // non-nil: reads wait for it to be closed
	held atomic.Int64  // READ requests waiting at the gate now
}

// newSlowDisk makes the file system with the files named by the keys of
// files, holding their values, and mounts it; it skips the test where it
// cannot (not root, no FUSE, no loop devices, no mkfs.ext4).
func newSlowDisk(t *testing.T, files map[string][]byte) *slowDisk {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("a loop device and a FUSE mount need root")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s: %v", tool, err)
		}
	}
	base := t.TempDir()
	src, mdir := filepath.Join(base, "src"), filepath.Join(base, "mnt")
	for _, d := range []string{src, mdir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		total += int64(len(data))
	}
	imgPath := filepath.Join(base, "img")
	size := (total*5/4 + 64<<20) &^ (1<<20 - 1)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", "-d", src, imgPath, strconv.FormatInt(size>>10, 10)+"k").CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v: %s", err, out)
	}
	os.RemoveAll(src)
	img, err := os.Open(imgPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	d := &slowDisk{dir: mdir, img: img}
	fs := newBackedFS(t, size, d.readImage)
	t.Cleanup(d.Resume) // before the FUSE server's cleanup waits for its reads

	out, err := exec.Command("losetup", "-r", "-f", "--show", fs.path).CombinedOutput()
	if err != nil {
		t.Skipf("losetup: %v: %s", err, out)
	}
	d.loop = strings.TrimSpace(string(out))
	t.Cleanup(func() {
		d.Resume()
		exec.Command("losetup", "-d", d.loop).Run()
	})
	if err := unix.Mount(d.loop, mdir, "ext4", unix.MS_RDONLY, "noload"); err != nil {
		t.Skipf("mounting ext4 on %s: %v", d.loop, err)
	}
	t.Cleanup(func() {
		d.Resume()
		unix.Unmount(mdir, unix.MNT_DETACH)
	})
	return d
}

// readImage is the FUSE server's answer to a read of n bytes at off of
// the image, once the gate opens (Stall).
func (d *slowDisk) readImage(off, n int64) ([]byte, error) {
	d.mu.Lock()
	gate := d.gate
	d.mu.Unlock()
	if gate != nil {
		d.held.Add(1)
		<-gate
		d.held.Add(-1)
	}
	b := make([]byte, n)
	if k, err := d.img.ReadAt(b, off); k < len(b) {
		return nil, err
	}
	return b, nil
}

// path is where the file name is.
func (d *slowDisk) path(name string) string { return filepath.Join(d.dir, name) }

// open opens the file name, closed when the test ends.
func (d *slowDisk) open(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Open(d.path(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// Stall holds every read from now on until Resume.
func (d *slowDisk) Stall() {
	d.mu.Lock()
	if d.gate == nil {
		d.gate = make(chan struct{})
	}
	d.mu.Unlock()
}

// Resume answers the reads held and every later one.
func (d *slowDisk) Resume() {
	d.mu.Lock()
	if d.gate != nil {
		close(d.gate)
		d.gate = nil
	}
	d.mu.Unlock()
}

// adv27Engine makes an engine on io_uring with opts, closed when the
// test ends; it skips the test where the ring is missing.
func adv27Engine(t *testing.T, opts ...Option) *Engine {
	t.Helper()
	e, err := NewEngine(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if e.Backend() != BackendIOUring {
		t.Skipf("backend %s: the test is of the ring", e.Backend())
	}
	return e
}

// adv27Hot returns a file of the test's own disk holding data, all of it
// in the page cache.
func adv27Hot(t *testing.T, data []byte) *os.File {
	t.Helper()
	f := fdtest.TempFile(t, data)
	if _, err := io.Copy(io.Discard, f); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestAdv27StalledDiskHoldsNoSendTurn: a copy whose chunk its Warmer found
// in the page cache takes one of the engine's turns for the sendfile(2)
// call sending it. Pages that are in the page cache but still being read
// (another reader's reads, on a disk that has stopped answering) pass the
// probe where the chunk's last page is read already, and the call then
// waits for the disk holding its turn. With every turn so held, copies of
// other files, wholly in the page cache, must still go on.
func TestAdv27StalledDiskHoldsNoSendTurn(t *testing.T) {
	const chunk = 4 << 20
	data := fdtest.Random(2 * chunk)
	d := newSlowDisk(t, map[string][]byte{"s": data})
	turns := runtime.GOMAXPROCS(0)
	e := adv27Engine(t)

	// The last page of the first chunk in the page cache, and only it.
	r := d.open(t, "s")
	unix.Fadvise(int(r.Fd()), 0, 0, unix.FADV_DONTNEED)
	if err := unix.Fadvise(int(r.Fd()), 0, 0, unix.FADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	page := int64(os.Getpagesize())
	if _, err := r.ReadAt(make([]byte, page), chunk-page); err != nil {
		t.Fatal(err)
	}
	if n := fdtest.CachedPages(t, r, chunk); n != 1 {
		t.Skipf("%d pages of the first chunk cached; want 1", n)
	}
	srcs := make([]*os.File, turns)
	for i := range srcs {
		srcs[i] = d.open(t, "s") // opened before the disk stalls
	}

	// The rest of the chunk read by readers the stalled disk holds: its
	// pages are in the page cache, being read.
	d.Stall()
	var readers sync.WaitGroup
	t.Cleanup(readers.Wait)
	t.Cleanup(d.Resume)
	for off := int64(0); off < chunk-page; off += 128 << 10 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			r.ReadAt(make([]byte, min(128<<10, chunk-page-off)), off)
		}()
	}
	isoUntil(t, func() bool { return fdtest.CachedPages(t, r, chunk) == chunk/uint64(page) }, "the chunk's pages in the page cache")

	// A copy that keeps more than one file copy running, so that each
	// copy below has a Warmer: of a file in the page cache, into a
	// socket whose peer does not read.
	adv27Busy(t, e)
	base := e.Stats().CachedSendTurns
	t.Logf("a copy of 16 MiB in the page cache alone: %v", adv27TimeCopy(t, e, true, "tcp"))

	// As many copies of the stalled file into sockets as there are turns.
	var stalled []*Future
	var sinks []sink
	for _, src := range srcs {
		s := sinkKinds[3].make(t) // tcp
		sinks = append(sinks, s)
		stalled = append(stalled, e.CopyAsync(context.Background(), s.w, src))
	}
	isoUntil(t, func() bool { return e.Stats().CachedSendTurns >= base+uint64(turns) }, "the stalled copies' turns")

	// A copy of a file of the test's disk, all in the page cache.
	hot := fdtest.Random(16 << 20)
	h := adv27Hot(t, hot)
	s := sinkKinds[3].make(t)
	start := time.Now()
	f := e.CopyAsync(context.Background(), s.w, h)
	select {
	case <-f.Done():
	case <-time.After(10 * time.Second):
	}
	took := time.Since(start)
	stalledTurns := e.Stats().CachedSendTurns
	d.Resume()
	n, err := f.Wait()
	if n != int64(len(hot)) || err != nil {
		t.Errorf("copy of the cached file = (%d, %v), want (%d, nil)", n, err, len(hot))
	}
	if n, sum := s.finish(); n != int64(len(hot)) || sum != sha256.Sum256(hot) {
		t.Errorf("cached copy's destination got %d bytes, not its file's", n)
	}
	t.Logf("cached copy beside %d copies stalled on the disk: %v (turns taken then: %d)", len(stalled), took, stalledTurns)
	if took > 5*time.Second {
		t.Errorf("a copy of a file in the page cache waited %v beside copies stalled on another disk: they hold every send turn", took)
	}
	for i, f := range stalled {
		isoWait(t, f.Done(), "copy from the stalled disk")
		if n, err := f.Wait(); n != int64(len(data)) || err != nil {
			t.Errorf("copy %d from the stalled disk = (%d, %v), want (%d, nil)", i, n, err, len(data))
		}
		if n, sum := sinks[i].finish(); n != int64(len(data)) || sum != sha256.Sum256(data) {
			t.Errorf("copy %d from the stalled disk: destination got %d bytes, not its file's", i, n)
		}
	}
}

// adv27Busy starts on e a copy of a file in the page cache into a TCP
// socket whose peer does not read, which keeps more than
// RingMinConcurrency (1) file copies running while the test runs: the
// copies it starts then take the ring's paths. It waits until the copy
// is waiting for room.
func adv27Busy(t *testing.T, e *Engine) {
	t.Helper()
	a, _ := unreadTCP(t)
	ctx, cancel := context.WithCancel(context.Background())
	f := e.CopyAsync(ctx, a, adv27Hot(t, make([]byte, 64<<20)))
	t.Cleanup(func() { cancel(); f.Wait() })
	isoStalled(t, f)
}

// adv27TimeCopy copies a 16 MiB file of the test's disk (in the page
// cache where hot, else evicted from it) into a destination of kind
// ("tcp", "pipe", "file") on e, checks what arrived, and returns how
// long the copy took.
func adv27TimeCopy(t *testing.T, e *Engine, hot bool, kind string) time.Duration {
	t.Helper()
	took, _ := adv27Start(t, e, hot, kind, 16<<20)(isoGuard, nil)
	return took
}

// adv27Start starts the copy adv27TimeCopy makes, of size bytes, and
// returns a func that waits for it: for bound at most, and then, where
// it is not done, calls release (if not nil) and waits again, failing
// the test past isoGuard. It checks the copy and returns how long it
// took to end, and whether it ended within bound.
func adv27Start(t *testing.T, e *Engine, hot bool, kind string, size int) func(bound time.Duration, release func()) (time.Duration, bool) {
	t.Helper()
	data := fdtest.Random(size)
	var src *os.File
	if hot {
		src = adv27Hot(t, data)
	} else {
		src = fdtest.TempFile(t, data)
		fdtest.Evict(t, src)
	}
	var s sink
	switch kind {
	case "tcp":
		s = sinkKinds[3].make(t)
	case "pipe":
		s = sinkKinds[1].make(t)
	case "file":
		s = sinkKinds[0].make(t)
	}
	start := time.Now()
	f := e.CopyAsync(context.Background(), s.w, src)
	return func(bound time.Duration, release func()) (time.Duration, bool) {
		t.Helper()
		in := true
		select {
		case <-f.Done():
		case <-time.After(bound):
			in = false
			if release != nil {
				release()
			}
			isoWait(t, f.Done(), "copy to "+kind)
		}
		took := time.Since(start)
		if n, err := f.Wait(); n != int64(size) || err != nil {
			t.Errorf("copy to %s = (%d, %v), want (%d, nil)", kind, n, err, size)
		}
		if n, sum := s.finish(); n != int64(size) || sum != sha256.Sum256(data) {
			t.Errorf("copy to %s: destination got %d bytes, not the file's", kind, n)
		}
		return took, in
	}
}

// TestAdv27StalledDiskCopies: cold copies from a disk that has stopped
// answering, on one engine with copies from files of another disk. The
// healthy copies (cold and hot, into TCP sockets, pipes and files) must
// finish as they do alone, however many copies wait for the stalled
// disk: io.Copy's would, each on its own thread.
//
// Eight copies into sockets are enough for the stalled device's request
// queue to fill with their reads: the ring's loop thread then waits in
// io_uring_enter, issuing a READ (the kernel's readahead waits for a
// free request, blk_mq_get_tag), and every op queued after it waits
// behind it, whatever the file's disk. Copies into pipes, whose SPLICEs
// run on io-wq's workers, hold the workers (8 by default) while the disk
// stalls. Either way, once the stall has lasted stalledEnter, new copies
// keep off the ring (Driver.Stalled) and read on their own threads.
func TestAdv27StalledDiskCopies(t *testing.T) {
	for _, c := range []struct {
		name    string
		stalled int    // copies from the stalled disk
		kind    string // their destination
		backend Backend
		sqPoll  bool
	}{
		{"pipe,4", 4, "pipe", BackendIOUring, false},
		{"pipe,8", DefaultIOWQMaxWorkers, "pipe", BackendIOUring, false},
		{"tcp,8", 8, "tcp", BackendIOUring, false},
		{"sqpoll,tcp,8", 8, "tcp", BackendIOUring, true},
		{"splice,tcp,8", 8, "tcp", BackendSplice, false},
		{"splice,pipe,8", 8, "pipe", BackendSplice, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			fdtest.Check(t)
			files := map[string][]byte{}
			for i := range c.stalled {
				files["s"+strconv.Itoa(i)] = fdtest.Random(4 << 20)
			}
			d := newSlowDisk(t, files)
			opts := []Option{WithBackend(c.backend)}
			if c.sqPoll {
				opts = append(opts, WithSQPoll(true))
			}
			e, err := NewEngine(opts...)
			if err != nil {
				t.Skipf("backend %s: %v", c.backend, err)
			}
			t.Cleanup(func() { e.Close() })
			adv27Busy(t, e)
			alone := map[string]time.Duration{}
			for _, k := range []string{"tcp", "pipe", "file"} {
				for _, hot := range []bool{false, true} {
					name := map[bool]string{true: "hot ", false: "cold "}[hot] + k
					alone[name] = adv27TimeCopy(t, e, hot, k)
				}
			}
			srcs := make([]*os.File, c.stalled)
			for i := range srcs {
				srcs[i] = d.open(t, "s"+strconv.Itoa(i))
			}
			d.Stall()
			t.Cleanup(d.Resume)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var stalled []*Future
			for _, src := range srcs {
				var s sink
				if c.kind == "tcp" {
					s = sinkKinds[3].make(t)
				} else {
					s = sinkKinds[1].make(t)
				}
				stalled = append(stalled, e.CopyAsync(ctx, s.w, src))
			}
			// The loop device reads its requests one by one: the first
			// one held, the others wait behind it.
			isoUntil(t, func() bool { return d.held.Load() > 0 }, "the stalled copies' reads")
			time.Sleep(500 * time.Millisecond)
			for _, k := range []string{"tcp", "pipe", "file"} {
				for _, hot := range []bool{false, true} {
					name := map[bool]string{true: "hot ", false: "cold "}[hot] + k
					took, in := adv27Start(t, e, hot, k, 16<<20)(10*time.Second, d.Resume)
					if !in {
						t.Errorf("%s: not done after %v beside %d copies stalled on another disk (%v alone)", name, took, c.stalled, alone[name])
						d.Resume()
						return
					}
					t.Logf("%s: %v beside the stalled copies, %v alone", name, took, alone[name])
				}
			}
			// Cancelled, the stalled copies end only once their reads
			// do, as io.Copy's would (docs/design.md, "Cancellation"):
			// measured, not asserted.
			start := time.Now()
			cancel()
			ended := 0
			timeout := time.After(time.Second)
		wait:
			for _, f := range stalled {
				select {
				case <-f.Done():
					ended++
				case <-timeout:
					break wait
				}
			}
			t.Logf("cancelled: %d of the %d stalled copies ended within %v", ended, len(stalled), time.Since(start))
			d.Resume()
			for i, f := range stalled {
				isoWait(t, f.Done(), "a cancelled copy from the stalled disk")
				if _, err := f.Wait(); err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("cancelled copy %d from the stalled disk: %v, want context.Canceled or nil", i, err)
				}
			}
		})
	}
}
