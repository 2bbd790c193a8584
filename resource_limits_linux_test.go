//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Adversarial tests, twenty-fourth round: destinations that take fewer
// bytes than they are given (a file system that fills up, a FUSE server
// that answers a write with 0 bytes written), a source file that
// splices as empty, urgent data on unix stream sockets, sockets shut
// down for reading under a copy, UDP sockets, and engines made with
// few descriptors to spare.

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

// TestAdv24SyntheticFileSource copies from a file whose size is
// reported as 0 while reads return its bytes: a FUSE file of direct I/O,
// as lxcfs serves /proc/meminfo and the like in containers
// (newSyntheticFS). read(2) returns the bytes; splice(2) and
// sendfile(2) read through the page cache, up to the size, and return
// 0: the copy took that for the file's end, and delivered nothing. Every
// copy must deliver what read(2) reads, as io.Copy does into a pipe, a
// file or a writer. (io.Copy sends nothing into a socket from it, by
// sendfile(2), but the file's bytes from it under an *io.LimitedReader
// into a unix socket: the bytes read(2) reads are the reference, as
// where io.Copy's splice loses an O_DIRECT file's, TestAdv8Descriptors.)
func TestAdv24SyntheticFileSource(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(70000 + 3)
	for _, ec := range adv24Engines(t) {
		e := newTestEngine(t, ec.opts...)
		for _, how := range []string{"plain", "limited", "offset"} {
			for _, sk := range advSinks {
				t.Run(fmt.Sprintf("%s/%s->%s", ec.name, how, sk), func(t *testing.T) {
					fs := newSyntheticFS(t, data)
					f, err := os.Open(fs.path)
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					var src io.Reader = f
					want := data
					switch how {
					case "limited":
						src, want = &io.LimitedReader{R: f, N: 40000}, data[:40000]
					case "offset":
						if _, err := f.Seek(5, io.SeekStart); err != nil {
							t.Fatal(err)
						}
						want = data[5:]
					}
					w, finish := advSink(t, sk)
					var n int64
					fdtest.Within(t, 20*time.Second, func() { n, err = e.Copy(w, src) })
					got := finish()
					if n != int64(len(want)) || err != nil || !bytes.Equal(got, want) {
						t.Errorf("Copy = (%d, %v), destination got %d bytes; want (%d, nil) and the file's", n, err, len(got), len(want))
					}
				})
			}
		}
	}
}

// TestAdv24SyntheticFileFanOut fans a file whose size is reported as 0
// while reads return its bytes (newSyntheticFS) out to a pipe, a unix
// socket and a writer: each must get the bytes read(2) reads, as from
// io.Copy's reads of it.
func TestAdv24SyntheticFileFanOut(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(70000 + 3)
	for _, ec := range adv24Engines(t) {
		t.Run(ec.name, func(t *testing.T) {
			e := newTestEngine(t, ec.opts...)
			fs := newSyntheticFS(t, data)
			src, err := os.Open(fs.path)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			fanOutToSinks(t, e, src, data)
		})
	}
}

// fanOutToSinks fans src out with e to a pipe, a unix socket and a
// writer (advSink), and checks that each got all of data, src's bytes.
func fanOutToSinks(t *testing.T, e *Engine, src io.Reader, data []byte) {
	t.Helper()
	sinks := []string{"pipe", "unix", "writer"}
	var ws []io.Writer
	var finishes []func() []byte
	for _, sk := range sinks {
		w, finish := advSink(t, sk)
		ws, finishes = append(ws, w), append(finishes, finish)
	}
	var res []Result
	fdtest.Within(t, 20*time.Second, func() { res = e.FanOut(context.Background(), src, ws) })
	for i, r := range res {
		got := finishes[i]()
		if r.Err != nil || r.Written != int64(len(data)) || !bytes.Equal(got, data) {
			t.Errorf("%s: (%d, %v), destination got %d bytes; want (%d, nil) and the file's", sinks[i], r.Written, r.Err, len(got), len(data))
		}
	}
}

// TestAdv24UnixUrgent copies from a unix stream socket whose peer sent
// out-of-band data (MSG_OOB, as TCP's urgent data: a read(2) stops at
// its mark and then steps over the byte, unless SO_OOBINLINE) into
// every destination kind: the copy must deliver what io.Copy's read(2)
// loop delivers, and count it.
func TestAdv24UnixUrgent(t *testing.T) {
	fdtest.Check(t)
	big := fdtest.Random(300 << 10)
	type step struct {
		data []byte
		oob  byte // sent as MSG_OOB where data is nil
	}
	cases := []struct {
		name   string
		inline bool
		steps  []step
	}{
		{"mid", false, []step{{data: []byte("abc")}, {oob: '!'}, {data: []byte("def")}}},
		{"first", false, []step{{oob: '!'}, {data: []byte("def")}}},
		{"last", false, []step{{data: []byte("abc")}, {oob: '!'}}},
		{"twice", false, []step{{data: []byte("ab")}, {oob: '1'}, {oob: '2'}, {data: []byte("cd")}}},
		{"inline", true, []step{{data: []byte("abc")}, {oob: '!'}, {data: []byte("def")}}},
		{"big", false, []step{{data: big[:150<<10]}, {oob: '!'}, {data: big[150<<10:]}}},
	}
	a, b := unixPair(t)
	err := fdtest.SendOOBByte(b, '!')
	a.Close()
	b.Close()
	if err != nil {
		// No CONFIG_AF_UNIX_OOB (Linux 5.15).
		t.Skipf("MSG_OOB on a unix stream socket: %v", err)
	}
	// source returns the copy's end of a unix stream socket whose peer
	// runs the steps and closes; all of them before it returns where
	// they fit in the socket's buffer, so that a read(2) meets each mark
	// where io.Copy's met it.
	source := func(t *testing.T, inline bool, steps []step) *net.UnixConn {
		a, b := unixPair(t)
		t.Cleanup(func() { a.Close(); b.Close() })
		if inline {
			rc, _ := a.SyscallConn()
			rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_OOBINLINE, 1) })
		}
		fed := make(chan struct{})
		size := 0
		go func() {
			defer close(fed)
			for _, s := range steps {
				var err error
				if s.data == nil {
					err = fdtest.SendOOBByte(b, s.oob)
				} else {
					_, err = b.Write(s.data)
				}
				if err != nil {
					t.Errorf("feeding: %v", err)
				}
			}
			b.Close()
		}()
		t.Cleanup(func() { <-fed })
		for _, s := range steps {
			size += len(s.data)
		}
		if size < 64<<10 {
			<-fed
		}
		return a
	}
	for _, ec := range adv24Engines(t) {
		e := newTestEngine(t, ec.opts...)
		for _, c := range cases {
			for _, sk := range advSinks {
				t.Run(fmt.Sprintf("%s/%s->%s", ec.name, c.name, sk), func(t *testing.T) {
					w, finish := advSink(t, sk)
					wantN, wantErr := io.Copy(struct{ io.Writer }{w}, struct{ io.Reader }{source(t, c.inline, c.steps)})
					want := finish()
					w, finish = advSink(t, sk)
					var n int64
					var err error
					fdtest.Within(t, 20*time.Second, func() { n, err = e.Copy(w, source(t, c.inline, c.steps)) })
					got := finish()
					if n != wantN || !sameErr(err, wantErr) || !bytes.Equal(got, want) {
						t.Errorf("Copy = (%d, %v), destination got %q; io.Copy's read(2) loop = (%d, %v), %q", n, err, trunc(got), wantN, wantErr, trunc(want))
					}
				})
			}
		}
	}
}

// TestAdv24SourceShutRead shuts a TCP or unix stream source down for
// reading (shutdown(2) SHUT_RD) before its copy starts, with bytes
// queued, or while its copy waits for more: the peer stays open. A
// read(2) then returns what was queued, then 0: io.Copy ends with
// (bytes queued, nil), and so must the copy, not wait for the peer.
func TestAdv24SourceShutRead(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(64<<10 + 3)
	for _, ec := range adv24Engines(t) {
		e := newTestEngine(t, ec.opts...)
		for _, kind := range []string{"tcp", "unix"} {
			for _, when := range []string{"before", "during"} {
				for _, sk := range advSinks {
					t.Run(fmt.Sprintf("%s/%s/%s->%s", ec.name, kind, when, sk), func(t *testing.T) {
						var a, b net.Conn
						if kind == "tcp" {
							a, b = tcpPair(t)
						} else {
							a, b = unixPair(t)
						}
						t.Cleanup(func() { a.Close(); b.Close() })
						if _, err := b.Write(data); err != nil {
							t.Fatal(err)
						}
						shut := func() {
							rc, _ := a.(syscall.Conn).SyscallConn()
							rc.Control(func(fd uintptr) {
								if err := unix.Shutdown(int(fd), unix.SHUT_RD); err != nil {
									t.Errorf("shutdown: %v", err)
								}
							})
						}
						if when == "before" {
							shut()
						}
						w, finish := advSink(t, sk)
						f := e.CopyAsync(context.Background(), w, a)
						if when == "during" {
							// Once the copy has read every byte queued
							// (or just about then: the copy's result is
							// the same either way).
							rc, _ := a.(syscall.Conn).SyscallConn()
							fdtest.Within(t, 20*time.Second, func() {
								for queued := 1; queued > 0; time.Sleep(time.Millisecond) {
									rc.Control(func(fd uintptr) { queued, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
								}
							})
							shut()
						}
						var n int64
						var err error
						fdtest.Within(t, 20*time.Second, func() { n, err = f.Wait() })
						got := finish()
						if n != int64(len(data)) || err != nil || !bytes.Equal(got, data) {
							t.Errorf("copy = (%d, %v), destination got %d bytes; want (%d, nil) and the data", n, err, len(got), len(data))
						}
					})
				}
			}
		}
	}
}

// udpPair returns a UDP socket connected to another, unconnected one, on
// the loopback: the first is the copy's end, the second its peer, which
// sends to it with WriteTo and reads what it sends. Both are closed when
// the test ends.
func udpPair(t *testing.T) (conn, peer *net.UDPConn) {
	t.Helper()
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	conn, err = net.DialUDP("udp", nil, peer.LocalAddr().(*net.UDPAddr))
	if err != nil {
		peer.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); peer.Close() })
	for _, c := range []*net.UDPConn{conn, peer} {
		// Room for every datagram a test sends (as root: past
		// net.core.rmem_max), so that none is dropped.
		rc, _ := c.SyscallConn()
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) })
	}
	return conn, peer
}

// TestAdv24UDP copies from a connected UDP socket (datagrams of 100,
// 40,000 and 7 bytes, read under an *io.LimitedReader of what io.Copy's
// reads of 32 KiB take of them: the middle one is cut) into every
// destination kind, and from files into a UDP socket (whose peer lists
// the datagrams it got): count, bytes, datagram sizes and error class
// must be io.Copy's.
func TestAdv24UDP(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(70000)
	udpSource := advEnd{"udp-limited", func(t *testing.T) any {
		a, peer := udpPair(t)
		for _, d := range [][]byte{data[:100], data[100:40100], data[40100:40107]} {
			if _, err := peer.WriteTo(d, a.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
		return &io.LimitedReader{R: a, N: 100 + 32<<10 + 7}
	}}
	udpSink := func(t *testing.T) (io.Writer, func() []byte) {
		a, peer := udpPair(t)
		return a, messagesOf(t, peer, syscall.SOCK_DGRAM)
	}
	srcs := []advEnd{
		{"file", func(t *testing.T) any { return fdtest.TempFile(t, data) }},
		{"file-limited", func(t *testing.T) any { return &io.LimitedReader{R: fdtest.TempFile(t, data), N: 40000} }},
		{"memfd-odd", func(t *testing.T) any {
			f := memfd(t, data, 0)
			f.Seek(4095, io.SeekStart)
			return f
		}},
	}
	for _, ec := range adv24Engines(t) {
		e := newTestEngine(t, ec.opts...)
		for _, sk := range advSinks {
			t.Run(fmt.Sprintf("%s/udp->%s", ec.name, sk), func(t *testing.T) {
				compareWithIOCopy(t, e, udpSource, func(t *testing.T) (io.Writer, func() []byte) { return advSink(t, sk) })
			})
		}
		for _, src := range srcs {
			t.Run(fmt.Sprintf("%s/%s->udp", ec.name, src.name), func(t *testing.T) {
				compareWithIOCopy(t, e, src, udpSink)
			})
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

// packetPipe returns the two ends of a pipe in packet mode (pipe2(2)
// with O_DIRECT: each write(2) of up to PIPE_BUF bytes is a packet, and
// a read(2) returns one packet at most), on the netpoller unless
// blocking. Both are closed when the test ends.
func packetPipe(t *testing.T, blocking bool) (r, w *os.File) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_DIRECT); err != nil {
		t.Skipf("pipe2(O_DIRECT): %v", err)
	}
	if !blocking {
		unix.SetNonblock(p[0], true)
		unix.SetNonblock(p[1], true)
	}
	r, w = os.NewFile(uintptr(p[0]), "packet-r"), os.NewFile(uintptr(p[1]), "packet-w")
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// TestAdv24PacketPipe copies from a pipe in packet mode (packets of 100,
// 4096, 7 and 70,000 bytes, the last cut by the kernel into packets of
// PIPE_BUF), whole and under an *io.LimitedReader that ends within a
// packet, into every destination kind but a pipe, and from a file and a
// pipe into such a pipe (read in reads of PIPE_BUF or more, which
// take a packet whole): count, bytes and error class must be io.Copy's.
//
// Not into a pipe: splice(2) between two pipes moves the source's
// buffers as they are, packets still, and a read of the destination
// shorter than a packet drops the rest of it (io.ReadAll's first reads
// of 512 bytes lose most of each one), where io.Copy writes a plain
// stream. Only the write end of a pipe says it is in packet mode
// (O_DIRECT): a copy from the read end cannot tell (docs/design.md).
func TestAdv24PacketPipe(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(100 + 4096 + 7 + 70000)
	packets := [][]byte{data[:100], data[100:4196], data[4196:4203], data[4203:]}
	source := func(blocking bool, limit int64) func(t *testing.T) any {
		return func(t *testing.T) any {
			r, w := packetPipe(t, blocking)
			fed := make(chan struct{})
			go func() {
				defer close(fed)
				for _, p := range packets {
					if _, err := w.Write(p); err != nil {
						break // the reader is gone: a copy under a limit
					}
				}
				w.Close()
			}()
			t.Cleanup(func() { r.Close(); <-fed })
			if limit >= 0 {
				return &io.LimitedReader{R: r, N: limit}
			}
			return r
		}
	}
	srcs := []advEnd{
		{"packets", source(false, -1)},
		{"packets-blocking", source(true, -1)},
		{"packets-limited", source(false, 4150)},
	}
	sink := func(t *testing.T) (io.Writer, func() []byte) {
		r, w := packetPipe(t, false)
		got := fdtest.ReadInPieces(r, 64<<10)
		return w, func() []byte {
			w.Close()
			return <-got
		}
	}
	for _, ec := range adv24Engines(t) {
		e := newTestEngine(t, ec.opts...)
		for _, src := range srcs {
			for _, sk := range advSinks {
				if sk == "pipe" {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s->%s", ec.name, src.name, sk), func(t *testing.T) {
					compareWithIOCopy(t, e, src, func(t *testing.T) (io.Writer, func() []byte) { return advSink(t, sk) })
				})
			}
		}
		for _, src := range []advEnd{
			{"file", func(t *testing.T) any { return fdtest.TempFile(t, data) }},
			// Not a socket: io.Copy would splice it into the pipe
			// through a pipe of Go's own cache, which outlives the test.
			{"pipe", func(t *testing.T) any { return fedPipe(t, data) }},
		} {
			t.Run(fmt.Sprintf("%s/%s->packet-pipe", ec.name, src.name), func(t *testing.T) {
				compareWithIOCopy(t, e, src, sink)
			})
		}
	}
}
