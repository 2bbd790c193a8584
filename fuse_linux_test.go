//go:build !pipes_portable

package pipes

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// stallFS is a FUSE file system served by the test, holding one regular
// file, "f", whose reads are answered only once the test releases them:
// the stand-in for a file on a network file system whose server went
// silent. Mounting needs root and /dev/fuse; newStallFS skips the test
// where it cannot mount.
type stallFS struct {
	path    string // the file's path
	size    int64
	dev     int // the /dev/fuse descriptor, in blocking mode
	release chan struct{}
	once    sync.Once
	reads   chan struct{} // a token per READ request received
	wg      sync.WaitGroup
	// accept, if set, makes "f" writable (FOPEN_DIRECT_IO: every write
	// goes to the server): it is told the size of each WRITE request
	// and returns how many of its bytes the server says it wrote.
	accept func(size int) int
	// synthetic, if set, is what reads of "f" return, as a file of
	// direct I/O (FOPEN_DIRECT_IO) whose size is reported as 0: the
	// files lxcfs serves in place of /proc/meminfo and the like.
	synthetic []byte
	// openFlags are FOPEN_ flags the server adds to its answer to each
	// OPEN (FOPEN_NONSEEKABLE, say).
	openFlags uint32
	// regen, if set with synthetic, makes the file's contents anew at
	// each READ at offset 0 (synthetic = regen()), as lxcfs makes a
	// descriptor's /proc/meminfo then, and serves a READ further on
	// from the contents made last.
	regen func() []byte
	// onRead, if set with synthetic, is called at each READ request,
	// before it is answered.
	onRead func()
	// backing, if set, answers each READ of n bytes at off (n cut to
	// the size) with what it returns, in a goroutine of its own, so
	// that it may wait: an error answers EIO.
	backing func(off, n int64) ([]byte, error)
}

// FUSE protocol numbers (linux/fuse.h).
const (
	fuseLookup      = 1
	fuseForget      = 2
	fuseGetattr     = 3
	fuseOpen        = 14
	fuseStatfs      = 17
	fuseRead        = 15
	fuseWrite       = 16
	fuseRelease     = 18
	fuseFlush       = 25
	fuseInit        = 26
	fuseInterrupt   = 36
	fuseBatchForget = 42
	fuseInHeader    = 40
	fuseOutHeader   = 16
	fuseAttrSize    = 88
)

func newStallFS(t *testing.T, size int64) *stallFS {
	t.Helper()
	return mountFS(t, &stallFS{size: size, release: make(chan struct{}), reads: make(chan struct{}, 1<<16)})
}

// newWriteFS is a stallFS whose file "f", empty, takes writes: the
// server answers each WRITE request of size bytes with accept(size)
// bytes written. Its reads are answered at once.
func newWriteFS(t *testing.T, accept func(size int) int) *stallFS {
	t.Helper()
	fs := &stallFS{release: make(chan struct{}), reads: make(chan struct{}, 1<<16), accept: accept}
	fs.Release()
	return mountFS(t, fs)
}

// newSyntheticFS is a stallFS whose file "f" reads as data while its
// size is reported as 0 (synthetic). Its reads are answered at once.
// set, if any, sets more of its fields (openFlags, regen, onRead)
// before it is mounted.
func newSyntheticFS(t *testing.T, data []byte, set ...func(*stallFS)) *stallFS {
	t.Helper()
	fs := &stallFS{release: make(chan struct{}), reads: make(chan struct{}, 1<<16), synthetic: data}
	for _, f := range set {
		f(fs)
	}
	fs.Release()
	return mountFS(t, fs)
}

// newBackedFS is a stallFS whose file "f" of size bytes reads as
// backing answers (stallFS.backing), each read reaching the server
// (FOPEN_DIRECT_IO). Its reads are answered once backing returns.
func newBackedFS(t *testing.T, size int64, backing func(off, n int64) ([]byte, error)) *stallFS {
	t.Helper()
	fs := &stallFS{size: size, release: make(chan struct{}), reads: make(chan struct{}, 1<<16), backing: backing, openFlags: 1 << 0}
	fs.Release()
	return mountFS(t, fs)
}

// mountFS mounts fs, made by newStallFS or newWriteFS, and serves it.
func mountFS(t *testing.T, fs *stallFS) *stallFS {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("mounting a FUSE file system needs root")
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no FUSE: %v", err)
	}
	dir := t.TempDir()
	opts := "fd=" + strconv.Itoa(fd) + ",rootmode=40000,user_id=0,group_id=0,allow_other"
	if err := unix.Mount("stallfs", dir, "fuse", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		unix.Close(fd)
		t.Skipf("mounting FUSE: %v", err)
	}
	fs.path, fs.dev = filepath.Join(dir, "f"), fd
	fs.wg.Add(1)
	go fs.serve()
	var st unix.Stat_t // of the mount: the connection's number
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	// Go adds every file it opens to its epoll set, and the kernel asks
	// a FUSE file system (FUSE_POLL) for the file's readiness with the
	// set's lock held: the runtime's own epoll_wait then waits for that
	// lock, and the server, in this process, may find no thread free to
	// answer. One poll(2) first, answered ENOSYS, and the kernel asks no
	// more.
	// (A signal, Go's preemption, makes either call fail with EINTR
	// before the server answers: try again.)
	f, err := unix.Open(fs.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	for err == unix.EINTR {
		f, err = unix.Open(fs.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := unix.Poll([]unix.PollFd{{Fd: int32(f), Events: unix.POLLIN}}, 0)
		if err != unix.EINTR {
			break
		}
	}
	unix.Close(f)
	t.Cleanup(func() {
		fs.Release()
		// The server's read ends once the connection is gone: at
		// once where the FUSE control file system lets the test abort
		// it, else once the last file open on it is closed.
		unix.Unmount(dir, unix.MNT_DETACH)
		abort := "/sys/fs/fuse/connections/" + strconv.FormatUint(uint64(st.Dev), 10) + "/abort"
		os.WriteFile(abort, []byte("1"), 0)
		fs.wg.Wait()
		unix.Close(fd)
	})
	return fs
}

// Release answers the reads waiting and every later one.
func (fs *stallFS) Release() { fs.once.Do(func() { close(fs.release) }) }

func (fs *stallFS) serve() {
	defer fs.wg.Done()
	buf := make([]byte, 1<<20+8192)
	for {
		// A blocking read, off the netpoller: the kernel asks the file
		// system (FUSE_POLL) when a file on it is added to an epoll set,
		// as Go adds every file it opens, with the epoll set's lock held.
		n, err := unix.Read(fs.dev, buf)
		if err != nil {
			if errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.ENOENT) {
				continue // an interrupted request, gone before it was read
			}
			return
		}
		if n < fuseInHeader {
			continue
		}
		req := append([]byte(nil), buf[:n]...)
		fs.handle(req)
	}
}

func (fs *stallFS) reply(unique uint64, errno syscall.Errno, out []byte) {
	b := make([]byte, fuseOutHeader+len(out))
	le := binary.LittleEndian
	le.PutUint32(b[0:], uint32(len(b)))
	le.PutUint32(b[4:], uint32(-int32(errno)))
	le.PutUint64(b[8:], unique)
	copy(b[fuseOutHeader:], out)
	unix.Write(fs.dev, b)
}

// attr encodes the fuse_attr of node (1: the root, 2: the file).
func (fs *stallFS) attr(node uint64) []byte {
	a := make([]byte, fuseAttrSize)
	le := binary.LittleEndian
	le.PutUint64(a[0:], node)
	mode, nlink := uint32(unix.S_IFDIR|0o755), uint32(2)
	if node == 2 {
		le.PutUint64(a[8:], uint64(fs.size))
		le.PutUint64(a[16:], uint64(fs.size+511)/512)
		mode, nlink = unix.S_IFREG|0o444, 1
		if fs.accept != nil {
			mode = unix.S_IFREG | 0o644
		}
	}
	le.PutUint32(a[60:], mode)
	le.PutUint32(a[64:], nlink)
	le.PutUint32(a[80:], 4096) // blksize
	return a
}

func (fs *stallFS) handle(req []byte) {
	le := binary.LittleEndian
	opcode := le.Uint32(req[4:])
	unique := le.Uint64(req[8:])
	node := le.Uint64(req[16:])
	arg := req[fuseInHeader:]
	switch opcode {
	case fuseInit:
		out := make([]byte, 64)
		le.PutUint32(out[0:], 7)
		le.PutUint32(out[4:], 31)
		le.PutUint32(out[8:], le.Uint32(arg[8:])) // max_readahead, as asked
		le.PutUint16(out[16:], 16)                // max_background
		le.PutUint16(out[18:], 12)                // congestion_threshold
		le.PutUint32(out[20:], 128<<10)           // max_write
		le.PutUint32(out[24:], 1)                 // time_gran
		fs.reply(unique, 0, out)
	case fuseLookup:
		name := string(arg)
		if i := len(name) - 1; i >= 0 && name[i] == 0 {
			name = name[:i]
		}
		if node != 1 || name != "f" {
			fs.reply(unique, syscall.ENOENT, nil)
			return
		}
		out := make([]byte, 40+fuseAttrSize)
		le.PutUint64(out[0:], 2)     // nodeid
		le.PutUint64(out[8:], 1)     // generation
		le.PutUint64(out[16:], 3600) // entry_valid
		le.PutUint64(out[24:], 3600) // attr_valid
		copy(out[40:], fs.attr(2))
		fs.reply(unique, 0, out)
	case fuseGetattr:
		out := make([]byte, 16+fuseAttrSize)
		le.PutUint64(out[0:], 3600)
		copy(out[16:], fs.attr(node))
		fs.reply(unique, 0, out)
	case fuseOpen:
		out := make([]byte, 16)
		le.PutUint64(out[0:], 1) // fh
		// FOPEN_KEEP_CACHE: else an open drops the file's pages, and
		// waits for those being read.
		flags := uint32(1 << 1)
		if fs.accept != nil || fs.synthetic != nil {
			flags = 1 << 0 // FOPEN_DIRECT_IO: no page cache, each read or write asked
		}
		le.PutUint32(out[8:], flags|fs.openFlags)
		fs.reply(unique, 0, out)
	case fuseWrite:
		if fs.accept == nil {
			fs.reply(unique, syscall.EROFS, nil)
			return
		}
		out := make([]byte, 8) // fuse_write_out
		le.PutUint32(out[0:], uint32(fs.accept(int(le.Uint32(arg[16:])))))
		fs.reply(unique, 0, out)
	case fuseRead:
		off, size := int64(le.Uint64(arg[8:])), int64(le.Uint32(arg[16:]))
		if fs.synthetic != nil {
			if fs.onRead != nil {
				fs.onRead()
			}
			if off == 0 && fs.regen != nil {
				fs.synthetic = fs.regen()
			}
			b := fs.synthetic[min(off, int64(len(fs.synthetic))):]
			fs.reply(unique, 0, b[:min(size, int64(len(b)))])
			return
		}
		size = max(min(size, fs.size-off), 0)
		select {
		case fs.reads <- struct{}{}:
		default:
		}
		fs.wg.Add(1)
		go func() {
			defer fs.wg.Done()
			<-fs.release
			if fs.backing == nil {
				fs.reply(unique, 0, make([]byte, size))
			} else if b, err := fs.backing(off, size); err != nil {
				fs.reply(unique, syscall.EIO, nil)
			} else {
				fs.reply(unique, 0, b)
			}
		}()
	case fuseStatfs:
		out := make([]byte, 80)      // fuse_kstatfs
		le.PutUint32(out[40:], 4096) // bsize
		le.PutUint32(out[44:], 255)  // namelen
		le.PutUint32(out[48:], 4096) // frsize
		fs.reply(unique, 0, out)
	case fuseRelease, fuseFlush:
		fs.reply(unique, 0, nil)
	case fuseForget, fuseBatchForget, fuseInterrupt:
		// No reply.
	default:
		fs.reply(unique, syscall.ENOSYS, nil)
	}
}
