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
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Adversarial tests: odd offsets and limits, files changing under a
// copy, descriptors the kernel refuses, sockets shut down for reading,
// the same file read by two copies, and Close and cancel at any point,
// each on every engine case. Every copy's count is checked against the
// bytes its destination got, and, where io.Copy has an answer, against
// io.Copy's on the same input.

// advSinks are the destination kinds of the adversarial tests.
var advSinks = []string{"pipe", "tcp", "unix", "file", "writer"}

// advSink returns a destination of kind (advSinks) and a finish that
// closes the copy's end and returns everything the destination got.
func advSink(t *testing.T, kind string) (io.Writer, func() []byte) {
	switch kind {
	case "unix":
		a, b := unixPair(t)
		got := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(b)
			got <- b
		}()
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, func() []byte {
			a.Close()
			return <-got
		}
	case "writer":
		var mu sync.Mutex
		var buf bytes.Buffer
		return onlyWriter{writerFunc(func(p []byte) (int, error) {
				mu.Lock()
				defer mu.Unlock()
				return buf.Write(p)
			})}, func() []byte {
				mu.Lock()
				defer mu.Unlock()
				return bytes.Clone(buf.Bytes())
			}
	}
	return captureSink(t, kind)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// advFile writes data to a new file in dir and opens it with flag.
func advFile(t *testing.T, dir string, data []byte, flag int) *os.File {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("adv-%d", len(data)))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestAdvFileOffsetsLimits copies a file from odd offsets with odd
// limits (an *io.LimitedReader) to every destination, two copies at once
// on every engine case, so that the ring's paths (the Warmer, ring
// reads) are taken on the io_uring engine: the destination must get the
// bytes io.Copy gives, the count must be theirs, LimitedReader.N must be
// updated, and the file's offset must be left after the last byte.
func TestAdvFileOffsetsLimits(t *testing.T) {
	fdtest.Check(t)
	page := int64(os.Getpagesize())
	const size = 1<<20 + 4<<10 + 123 // past the Warmer's 1 MiB read
	data := fdtest.Random(size)
	type olCase struct{ off, limit int64 } // limit -1: no LimitedReader
	cases := []olCase{
		{0, -1}, {1, -1}, {page - 1, -1}, {page + 1, -1}, {size - 1, -1}, {size, -1}, {size + 7, -1},
		{0, 0}, {0, 1}, {1, page - 1}, {page - 1, page + 1}, {page + 1, 1 << 20},
		{3, size}, {size - 1, 5}, {size + 1, 5}, {5, -5}, {1<<20 - 1, 2<<20 + 3},
	}
	dirs := map[string]string{"disk": t.TempDir()}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		dirs["tmpfs"] = mkTemp(t, "/dev/shm")
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for dname, dir := range dirs {
			for _, sk := range []string{"pipe", "tcp", "unix", "writer"} {
				t.Run(fmt.Sprintf("%s/%s/%s", ec.name, dname, sk), func(t *testing.T) {
					// Every case at once: the io_uring engine
					// warms them or reads them through the ring.
					var wg sync.WaitGroup
					for _, c := range cases {
						wg.Add(1)
						go func() {
							defer wg.Done()
							checkOffsetLimit(t, e, dir, sk, data, c.off, c.limit)
						}()
					}
					wg.Wait()
				})
			}
		}
	}
}

func mkTemp(t *testing.T, dir string) string {
	d, err := os.MkdirTemp(dir, "pipes-adv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func checkOffsetLimit(t *testing.T, e *Engine, dir, sink string, data []byte, off, limit int64) {
	d, err := os.MkdirTemp(dir, "c")
	if err != nil {
		t.Error(err)
		return
	}
	defer os.RemoveAll(d)
	f := advFile(t, d, data, os.O_RDONLY)
	fdtest.Evict(t, f)
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		t.Error(err)
		return
	}
	var src io.Reader = f
	var lr *io.LimitedReader
	if limit >= 0 {
		lr = &io.LimitedReader{R: f, N: limit}
		src = lr
	} else if limit < -1 {
		lr = &io.LimitedReader{R: f, N: limit}
		src = lr
	}
	w, finish := advSink(t, sink)
	n, err := e.Copy(w, src)
	got := finish()
	start := min(off, int64(len(data)))
	end := int64(len(data))
	if lr != nil {
		end = min(end, start+max(lr.N+n, 0))
	}
	want := data[start:end]
	what := fmt.Sprintf("off %d limit %d", off, limit)
	if err != nil {
		t.Errorf("%s: Copy = %d, %v", what, n, err)
	}
	if n != int64(len(got)) {
		t.Errorf("%s: Copy = %d, destination got %d", what, n, len(got))
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: destination got %d bytes, want %d (equal prefix: %v)", what, len(got), len(want), bytes.HasPrefix(want, got))
	}
	if lr != nil && limit >= 0 && lr.N != limit-n {
		t.Errorf("%s: LimitedReader.N = %d after %d bytes, want %d", what, lr.N, n, limit-n)
	}
	if pos, err := f.Seek(0, io.SeekCurrent); err != nil || pos != max(off, 0)+n {
		t.Errorf("%s: offset after the copy %d, %v; want %d", what, pos, err, off+n)
	}
}

// advEnd is a factory of one end of a copy: it returns the value the copy
// uses, fresh each time, so that pipes and io.Copy each get their own.
type advEnd struct {
	name string
	make func(t *testing.T) any
}

// pipeSource is a source named "pipe": the read end of a pipe that a
// goroutine writes data into, then closes (feedQuietly).
func pipeSource(data []byte) advEnd {
	return advEnd{"pipe", func(t *testing.T) any {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		feedQuietly(t, w, data)
		return r
	}}
}

// openPath opens path with flag, closed when the test ends.
func openPath(t *testing.T, path string, flag int) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		t.Skipf("open %s: %v", path, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func newFD(t *testing.T, fd int, err error, name string) *os.File {
	t.Helper()
	if err != nil {
		t.Skipf("%s: %v", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	t.Cleanup(func() { f.Close() })
	return f
}

// advOddSources are sources the kernel path refuses or treats specially;
// each is finite (a limit where the kind never ends by itself).
func advOddSources() []advEnd {
	data := fdtest.Random(100 << 10)
	file := func(t *testing.T, flag int) *os.File {
		path := filepath.Join(t.TempDir(), "src")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return openPath(t, path, flag)
	}
	return []advEnd{
		{"O_WRONLY", func(t *testing.T) any { return file(t, os.O_WRONLY) }},
		{"O_PATH", func(t *testing.T) any { return file(t, unix.O_PATH) }},
		{"O_DIRECT", func(t *testing.T) any { return file(t, os.O_RDONLY|syscall.O_DIRECT) }},
		{"O_DIRECT-odd-offset", func(t *testing.T) any {
			f := file(t, os.O_RDONLY|syscall.O_DIRECT)
			f.Seek(333, io.SeekStart)
			return &io.LimitedReader{R: f, N: 70000}
		}},
		{"O_RDWR", func(t *testing.T) any { return file(t, os.O_RDWR) }},
		{"directory", func(t *testing.T) any { return openPath(t, t.TempDir(), os.O_RDONLY) }},
		{"proc-version", func(t *testing.T) any { return openPath(t, "/proc/version", os.O_RDONLY) }},
		{"proc-environ", func(t *testing.T) any { return openPath(t, "/proc/self/environ", os.O_RDONLY) }},
		{"proc-cmdline", func(t *testing.T) any { return openPath(t, "/proc/self/cmdline", os.O_RDONLY) }},
		{"sys-file", func(t *testing.T) any { return openPath(t, "/sys/kernel/mm/transparent_hugepage/enabled", os.O_RDONLY) }},
		{"dev-null", func(t *testing.T) any { return openPath(t, "/dev/null", os.O_RDONLY) }},
		{"dev-zero-limited", func(t *testing.T) any {
			return &io.LimitedReader{R: openPath(t, "/dev/zero", os.O_RDONLY), N: 300 << 10}
		}},
		{"dev-urandom-limited", func(t *testing.T) any {
			return &io.LimitedReader{R: openPath(t, "/dev/urandom", os.O_RDONLY), N: 0}
		}},
		{"eventfd-limited", func(t *testing.T) any {
			fd, err := unix.Eventfd(5, unix.EFD_CLOEXEC)
			return &io.LimitedReader{R: newFD(t, fd, err, "eventfd"), N: 8}
		}},
		{"memfd", func(t *testing.T) any {
			fd, err := unix.MemfdCreate("adv", unix.MFD_CLOEXEC)
			f := newFD(t, fd, err, "memfd")
			f.Write(data)
			f.Seek(0, io.SeekStart)
			return f
		}},
		{"memfd-limited-odd", func(t *testing.T) any {
			fd, err := unix.MemfdCreate("adv", unix.MFD_CLOEXEC)
			f := newFD(t, fd, err, "memfd")
			f.Write(data)
			f.Seek(4095, io.SeekStart)
			return &io.LimitedReader{R: f, N: 4097}
		}},
		{"closed-file", func(t *testing.T) any {
			f := file(t, os.O_RDONLY)
			f.Close()
			return f
		}},
		{"nil-file", func(t *testing.T) any { return (*os.File)(nil) }},
		{"section-reader", func(t *testing.T) any { return io.NewSectionReader(file(t, os.O_RDONLY), 4095, 4097) }},
		{"unix-dgram", func(t *testing.T) any {
			a, b := fdtest.SocketPair(t, syscall.SOCK_DGRAM)
			t.Cleanup(func() { a.Close(); b.Close() })
			b.Write(data[:1000])
			b.Write(data[1000:1001])
			b.Write(nil)
			return &io.LimitedReader{R: a, N: 1001}
		}},
		{"unix-seqpacket", func(t *testing.T) any {
			a, b := fdtest.SocketPair(t, syscall.SOCK_SEQPACKET)
			t.Cleanup(func() { a.Close() })
			b.Write(data[:1000])
			b.Write(data[1000:3000])
			b.Close()
			return a
		}},
		{"pty-limited", func(t *testing.T) any {
			m := openPath(t, "/dev/ptmx", os.O_RDWR|unix.O_NOCTTY)
			if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
				t.Skip(err)
			}
			n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
			if err != nil {
				t.Skip(err)
			}
			s := openPath(t, fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY)
			tio, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS)
			if err != nil {
				t.Skip(err)
			}
			cfmakeraw(tio)
			unix.IoctlSetTermios(int(s.Fd()), unix.TCSETS, tio)
			s.Write([]byte("hello, tty"))
			return &io.LimitedReader{R: m, N: 10}
		}},
	}
}

func cfmakeraw(t *unix.Termios) {
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
}

// sameErr reports whether two copy errors are of one class: both nil, or
// both not nil with the same errno (where either has one) and the same
// answer to errors.Is(err, os.ErrClosed).
func sameErr(a, b error) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	if a == nil {
		return true
	}
	var ea, eb syscall.Errno
	if errors.As(a, &ea) != errors.As(b, &eb) || ea != eb {
		return false
	}
	return errors.Is(a, os.ErrClosed) == errors.Is(b, os.ErrClosed)
}

// compareWithIOCopy copies from src to sink with io.Copy, then with e,
// twice at once, and wants io.Copy's count, bytes and error class from
// each.
func compareWithIOCopy(t *testing.T, e *Engine, src advEnd, sink func(*testing.T) (io.Writer, func() []byte)) {
	w, finish := sink(t)
	wantN, wantErr := io.Copy(w, src.make(t).(io.Reader))
	want := finish()
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, finish := sink(t)
			n, err := e.Copy(w, src.make(t).(io.Reader))
			got := finish()
			if n != wantN || !bytes.Equal(got, want) || !sameErr(err, wantErr) {
				t.Errorf("Copy = %d, %v (got %q); io.Copy = %d, %v (%q)", n, err, trunc(got), wantN, wantErr, trunc(want))
			}
		}()
	}
	wg.Wait()
}

// TestAdvOddSources copies from sources the kernel refuses or handles
// specially to every destination, with one copy and with two at once,
// and wants io.Copy's count, bytes and error class on the same input.
func TestAdvOddSources(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, src := range advOddSources() {
			for _, sk := range advSinks {
				t.Run(fmt.Sprintf("%s/%s->%s", ec.name, src.name, sk), func(t *testing.T) {
					compareWithIOCopy(t, e, src, func(t *testing.T) (io.Writer, func() []byte) { return advSink(t, sk) })
				})
			}
		}
	}
}

// advOddSinks are destinations the kernel path refuses or treats
// specially; finish returns what they hold after the copy, where that can
// be read back (nil otherwise).
func advOddSinks() []struct {
	name string
	make func(t *testing.T) (io.Writer, func() []byte)
} {
	type sk = struct {
		name string
		make func(t *testing.T) (io.Writer, func() []byte)
	}
	none := func() []byte { return nil }
	file := func(t *testing.T, flag int) (*os.File, func() []byte) {
		path := filepath.Join(t.TempDir(), "dst")
		if err := os.WriteFile(path, []byte("prefix"), 0o600); err != nil {
			t.Fatal(err)
		}
		f := openPath(t, path, flag)
		return f, func() []byte {
			b, _ := os.ReadFile(path)
			return b
		}
	}
	return []sk{
		{"O_RDONLY", func(t *testing.T) (io.Writer, func() []byte) { return file(t, os.O_RDONLY) }},
		{"O_PATH", func(t *testing.T) (io.Writer, func() []byte) { return file(t, unix.O_PATH) }},
		{"O_APPEND", func(t *testing.T) (io.Writer, func() []byte) { return file(t, os.O_WRONLY|os.O_APPEND) }},
		{"O_WRONLY-mid", func(t *testing.T) (io.Writer, func() []byte) {
			f, fin := file(t, os.O_WRONLY)
			f.Seek(3, io.SeekStart)
			return f, fin
		}},
		{"O_DIRECT", func(t *testing.T) (io.Writer, func() []byte) { return file(t, os.O_WRONLY|syscall.O_DIRECT) }},
		{"directory", func(t *testing.T) (io.Writer, func() []byte) { return openPath(t, t.TempDir(), os.O_RDONLY), none }},
		{"dev-null", func(t *testing.T) (io.Writer, func() []byte) { return openPath(t, "/dev/null", os.O_WRONLY), none }},
		{"dev-full", func(t *testing.T) (io.Writer, func() []byte) { return openPath(t, "/dev/full", os.O_WRONLY), none }},
		{"proc-self-comm", func(t *testing.T) (io.Writer, func() []byte) {
			return openPath(t, "/proc/self/task/1/comm", os.O_RDONLY), none
		}},
		{"eventfd", func(t *testing.T) (io.Writer, func() []byte) {
			fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
			return newFD(t, fd, err, "eventfd"), none
		}},
		{"memfd", func(t *testing.T) (io.Writer, func() []byte) {
			fd, err := unix.MemfdCreate("adv", unix.MFD_CLOEXEC)
			f := newFD(t, fd, err, "memfd")
			return f, func() []byte {
				b, _ := os.ReadFile(fmt.Sprintf("/proc/self/fd/%d", fd))
				return b
			}
		}},
		{"closed-file", func(t *testing.T) (io.Writer, func() []byte) {
			f, _ := file(t, os.O_WRONLY)
			f.Close()
			return f, none
		}},
		{"unix-dgram", func(t *testing.T) (io.Writer, func() []byte) { return messageSink(t, syscall.SOCK_DGRAM) }},
		{"unix-seqpacket", func(t *testing.T) (io.Writer, func() []byte) { return messageSink(t, syscall.SOCK_SEQPACKET) }},
	}
}

// messageSink is a destination of a unix socketpair of type typ whose
// finish lists the sizes of the messages its peer got, as "[n]".
func messageSink(t *testing.T, typ int) (io.Writer, func() []byte) {
	a, b := fdtest.SocketPair(t, typ)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, messagesOf(t, b, typ)
}

// messagesOf returns a finish that lists, as "[n]", the sizes of the
// messages queued on b, a message socket of type typ whose peer a copy
// wrote.
func messagesOf(t *testing.T, b syscall.Conn, typ int) func() []byte {
	return func() []byte {
		// Every message is queued by now: read them without waiting (a
		// read deadline in the past would fail the Read before it
		// looked at the queue).
		rc, err := b.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1<<20)
		var got []byte
		rc.Control(func(fd uintptr) {
			for {
				n, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
				if err == unix.EINTR {
					continue
				}
				if err != nil || n == 0 && typ == syscall.SOCK_SEQPACKET {
					return
				}
				got = append(got, fmt.Sprintf("[%d]", n)...)
			}
		})
		return got
	}
}

// TestAdvOddSinks copies a file (and a pipe) into destinations the
// kernel refuses or handles specially, one copy and two at once, and
// wants io.Copy's count, result and error class on the same input.
func TestAdvOddSinks(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(150<<10 + 7)
	srcs := []advEnd{
		{"file", func(t *testing.T) any { return fdtest.TempFile(t, data) }},
		{"file-limited", func(t *testing.T) any { return &io.LimitedReader{R: fdtest.TempFile(t, data), N: 8} }},
		pipeSource(data[:60000]),
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, src := range srcs {
			for _, sk := range advOddSinks() {
				t.Run(fmt.Sprintf("%s/%s->%s", ec.name, src.name, sk.name), func(t *testing.T) {
					compareWithIOCopy(t, e, src, sk.make)
				})
			}
		}
	}
}

func trunc(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// advConn returns the two ends of a connection of kind "pipe", "tcp"
// (with small kernel buffers) or "unix": w is the copy's end.
func advConn(t *testing.T, kind string) (r io.ReadCloser, w io.WriteCloser) {
	switch kind {
	case "pipe":
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		return pr, pw
	case "tcp":
		a, b := tcpPair(t)
		smallBuffers(t, 64<<10, a, b)
		return b, a
	case "unix":
		a, b := unixPair(t)
		return b, a
	}
	t.Fatalf("unknown connection kind %q", kind)
	return nil, nil
}

// slowSink is a destination whose peer reads in small steps, yielding
// between them, so that copies into it stay in flight for a while.
func slowSink(t *testing.T, kind string) (io.Writer, func() []byte) {
	if kind != "pipe" && kind != "tcp" && kind != "unix" {
		return advSink(t, kind)
	}
	r, w := advConn(t, kind)
	got := make(chan []byte, 1)
	go func() {
		var all []byte
		buf := make([]byte, 16<<10)
		for {
			n, err := r.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
		got <- all
	}()
	t.Cleanup(func() { w.Close(); r.Close() })
	return w, func() []byte {
		w.Close()
		return <-got
	}
}

// TestAdvFileResized truncates or extends the source file while several
// copies of it run (so that the io_uring engine warms them or reads them
// through the ring): each copy must end without error, with a count equal
// to what its destination got, and what it got must be the file's bytes
// from the start, as they were when read.
func TestAdvFileResized(t *testing.T) {
	fdtest.Check(t)
	const size = 3 << 20
	page := os.Getpagesize()
	type resize struct {
		name string
		to   int64 // the new size; > size: extended with more data
		drop bool  // the pages dropped from the cache as well
	}
	resizes := []resize{
		{"to-0", 0, false}, {"to-page", int64(page), false}, {"to-1MiB", 1 << 20, true},
		{"to-odd", 1<<20 + 333, false}, {"extend", size + 2<<20 + 1, false},
		{"drop-pages", size, true},
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, rz := range resizes {
			t.Run(ec.name+"/"+rz.name, func(t *testing.T) {
				data := fdtest.Random(int(max(rz.to, size)))
				path := filepath.Join(t.TempDir(), "src")
				if err := os.WriteFile(path, data[:size], 0o600); err != nil {
					t.Fatal(err)
				}
				wf := openPath(t, path, os.O_RDWR)
				fdtest.Evict(t, wf)
				type run struct {
					f      *Future
					finish func() []byte
				}
				var runs []run
				sinks := []string{"tcp", "pipe", "unix", "file", "tcp", "pipe"}
				for i, sk := range sinks {
					src := openPath(t, path, os.O_RDONLY)
					if i%2 == 1 {
						src.Seek(int64(i*page+i), io.SeekStart)
					}
					w, finish := slowSink(t, sk)
					runs = append(runs, run{e.CopyAsync(context.Background(), w, src), finish})
				}
				for runs[0].f.Written() < 512<<10 && !isDone(runs[0].f) {
					time.Sleep(time.Millisecond)
				}
				switch {
				case rz.to > size:
					if _, err := wf.WriteAt(data[size:], size); err != nil {
						t.Fatal(err)
					}
				case rz.to < size:
					if err := wf.Truncate(rz.to); err != nil {
						t.Fatal(err)
					}
				}
				if rz.drop {
					unix.Fadvise(int(wf.Fd()), 0, 0, unix.FADV_DONTNEED)
				}
				for i, r := range runs {
					n, err := r.f.Wait()
					got := r.finish()
					off := 0
					if i%2 == 1 {
						off = i*page + i
					}
					if err != nil || n != int64(len(got)) {
						t.Errorf("copy %d: (%d, %v), destination got %d bytes", i, n, err, len(got))
					}
					if at := firstDiff(got, data, off, rz.to, sinks[i] == "pipe"); at >= 0 {
						t.Errorf("copy %d: %d bytes not the file's from offset %d: first difference at %d", i, len(got), off, at)
					}
				}
			})
		}
	}
}

func isDone(f *Future) bool {
	select {
	case <-f.Done():
		return true
	default:
		return false
	}
}

// firstDiff returns where got, read from offset off, first differs from
// data, or -1. Into a pipe a copy moves page references, so a truncation
// to mid-page (to) zeroes what the pipe holds of that page past it, as
// it does for the file (see TestCopyPageSharing): zeros there count as
// data.
func firstDiff(got, data []byte, off int, to int64, shared bool) int {
	if off+len(got) > len(data) {
		return len(data) - off
	}
	for i, b := range got {
		p := off + i
		if b != data[p] && !(shared && int64(p) >= to && b == 0) {
			return i
		}
	}
	return -1
}

// gatedSink is a destination of kind "tcp", "unix" or "pipe" whose peer
// reads nothing until open is called, then everything until EOF,
// comparing it with want as it goes. finish closes the copy's end and
// returns how many bytes the peer got and whether they were want's first
// (false for a nil want: not checked).
func gatedSink(t *testing.T, kind string, want []byte) (w io.WriteCloser, open func(), finish func() (int64, bool)) {
	r, w := advConn(t, kind)
	gate := make(chan struct{})
	type result struct {
		n  int64
		ok bool
	}
	got := make(chan result, 1)
	go func() {
		<-gate
		buf := make([]byte, 64<<10)
		res := result{ok: true}
		for {
			m, err := r.Read(buf)
			if want == nil {
				res.ok = false // not checked
			} else if res.ok && (res.n+int64(m) > int64(len(want)) || !bytes.Equal(buf[:m], want[res.n:res.n+int64(m)])) {
				res.ok = false
			}
			res.n += int64(m)
			if err != nil {
				break
			}
		}
		got <- res
	}()
	var once sync.Once
	open = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(func() { open(); w.Close(); res := <-got; got <- res; r.Close() })
	return w, open, func() (int64, bool) {
		open()
		w.Close()
		res := <-got
		got <- res
		return res.n, res.ok
	}
}

// TestAdvEngineCloseMany closes an engine with 256 copies in flight, of
// every kind the io_uring engine routes differently (warmed file ->
// socket, ring reads file -> pipe, the splice loop), half of them into
// destinations that read nothing: Close must return, every copy must end
// with nil or an error wrapping ErrClosed and a count equal to what its
// destination got (the bytes the file holds, from the start), and no
// descriptor or goroutine may be left.
func TestAdvEngineCloseMany(t *testing.T) {
	fdtest.Check(t)
	goroutines := runtime.NumGoroutine()
	const copies = 256
	data := fdtest.Random(1 << 20)
	paths := dataFiles(t, copies/4, data)
	for _, ec := range engineCases(t) {
		for _, at := range []string{"start", "running"} {
			t.Run(ec.name+"/"+at, func(t *testing.T) {
				evictAll(t, paths)
				e, err := NewEngine(append(ec.opts, WithMaxPipes(64))...)
				if err != nil {
					t.Fatal(err)
				}
				type run struct {
					f      *Future
					n      int64
					err    error
					done   chan struct{}
					src    *os.File
					open   func()
					finish func() (int64, bool)
				}
				runs := make([]*run, copies)
				for i := range runs {
					kind := []string{"tcp", "pipe", "unix", "tcp"}[i%4]
					w, open, finish := gatedSink(t, kind, data)
					src := openPath(t, paths[i%len(paths)], os.O_RDONLY)
					r := &run{src: src, open: open, finish: finish, done: make(chan struct{})}
					runs[i] = r
					if i%2 == 0 {
						open()
					}
					if i%3 == 0 {
						go func() { // Copy, not CopyAsync
							defer close(r.done)
							r.n, r.err = e.Copy(w, src)
						}()
						continue
					}
					r.f = e.CopyAsync(context.Background(), w, src)
				}
				if at == "running" {
					for e.Stats().Bytes < 64<<20 && e.Stats().InFlight > copies/2 {
						time.Sleep(time.Millisecond)
					}
				}
				closed := make(chan error, 1)
				go func() { closed <- e.Close() }()
				if err, ok := recvBy(closed, time.Now().Add(20*time.Second)); !ok {
					for _, r := range runs {
						r.open()
					}
					t.Fatalf("Close still runs 20s later")
				} else if err != nil {
					t.Errorf("Close: %v", err)
				}
				for i, r := range runs {
					if r.f != nil {
						r.n, r.err = r.f.Wait()
					} else {
						<-r.done
					}
					got, ok := r.finish()
					if r.err != nil && !errors.Is(r.err, ErrClosed) {
						t.Errorf("copy %d: (%d, %v), want nil or ErrClosed", i, r.n, r.err)
					}
					if r.n != got || !ok {
						t.Errorf("copy %d: (%d, %v); destination got %d bytes, the file's first: %v", i, r.n, r.err, got, ok)
					}
					if r.err == nil && r.n != int64(len(data)) {
						t.Errorf("copy %d: (%d, nil), a short copy", i, r.n)
					}
					if pos, _ := r.src.Seek(0, io.SeekCurrent); pos != r.n {
						t.Errorf("copy %d: source offset %d after %d bytes", i, pos, r.n)
					}
					r.src.Close()
				}
			})
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		t.Errorf("%d goroutines after the copies, %d before", n, goroutines)
	}
}

// TestAdvCancelAnywhere cancels copies at random points of their life,
// from before they start to after they end, 64 at once (so that the
// io_uring engine warms them or reads them through the ring), into
// destinations that read at once or only after the cancel: each must end
// with nil or an error matching ctx.Err() and its cause, with a count
// equal to what its destination got, the file's first bytes, and the
// file's offset left just after them.
func TestAdvCancelAnywhere(t *testing.T) {
	fdtest.Check(t)
	const copies = 64
	data := fdtest.Random(1<<20 + 4097)
	paths := dataFiles(t, copies/4, data)
	cause := errors.New("cancelled by the test")
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for round := range 3 {
			t.Run(fmt.Sprintf("%s/%d", ec.name, round), func(t *testing.T) {
				evictAll(t, paths)
				type run struct {
					f      *Future
					src    *os.File
					finish func() (int64, bool)
				}
				runs := make([]run, copies)
				var wg sync.WaitGroup
				for i := range runs {
					kind := []string{"tcp", "pipe", "unix", "tcp"}[i%4]
					w, open, finish := gatedSink(t, kind, data)
					if i%2 == 0 {
						open()
					}
					src := openPath(t, paths[i%len(paths)], os.O_RDONLY)
					ctx, cancel := context.WithCancelCause(context.Background())
					var r io.Reader = src
					if i%8 == 5 {
						r = &io.LimitedReader{R: src, N: int64(len(data) - i)}
					}
					runs[i] = run{e.CopyAsync(ctx, w, r), src, finish}
					wg.Add(1)
					go func() {
						defer wg.Done()
						switch i % 5 {
						case 0:
							cancel(cause)
						case 1:
							runtime.Gosched()
							cancel(cause)
						default:
							// Until it has written so much, or has
							// stalled on a destination not read.
							limit := int64(i * 8 << 10)
							stall := time.Now().Add(time.Duration(i) * time.Millisecond / 4)
							for runs[i].f.Written() < limit && !isDone(runs[i].f) && time.Now().Before(stall) {
								time.Sleep(100 * time.Microsecond)
							}
							cancel(cause)
						}
					}()
				}
				wg.Wait()
				for i, r := range runs {
					n, err := r.f.Wait()
					got, ok := r.finish()
					if err != nil && (!errors.Is(err, context.Canceled) || !errors.Is(err, cause)) {
						t.Errorf("copy %d: (%d, %v), want nil or context.Canceled and the cause", i, n, err)
					}
					want := int64(len(data))
					if i%8 == 5 {
						want -= int64(i)
					}
					if n != got || !ok || (err == nil && n != want) {
						t.Errorf("copy %d: (%d, %v); destination got %d bytes, the file's first: %v", i, n, err, got, ok)
					}
					if pos, _ := r.src.Seek(0, io.SeekCurrent); pos != n {
						t.Errorf("copy %d: source offset %d after %d bytes", i, pos, n)
					}
				}
			})
		}
	}
}

// dataFiles writes data to n new files and returns their paths.
func dataFiles(t *testing.T, n int, data []byte) []string {
	dir := t.TempDir()
	paths := make([]string, n)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprint(i))
		if err := os.WriteFile(paths[i], data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

// evictAll drops the pages of the files at paths from the page cache.
func evictAll(t *testing.T, paths []string) {
	for _, path := range paths {
		fdtest.Evict(t, openPath(t, path, os.O_RDONLY))
	}
}

// lowerNOFILE sets the soft RLIMIT_NOFILE to n, and puts it back when
// the test ends.
func lowerNOFILE(t *testing.T, n uint64) {
	t.Helper()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Skip(err)
	}
	lim := old
	lim.Cur = n
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &old) })
}

// highestFD returns the highest descriptor number open now.
func highestFD(t *testing.T) uint64 {
	var hi uint64
	for name := range fdtest.Open() {
		var n uint64
		fmt.Sscan(name, &n)
		hi = max(hi, n)
	}
	return hi
}

// TestAdvOutOfDescriptors runs 1024 copies of every kind at once with
// RLIMIT_NOFILE lowered so that no descriptor is left: the engine gets no
// new pipe and no duplicate, and every copy must still deliver all of
// its bytes, as io.Copy, which needs no descriptor, does. The engine is
// made with the limit at 256 too, so that its registered-file table is
// small and pins beyond it need duplicates.
func TestAdvOutOfDescriptors(t *testing.T) {
	fdtest.Check(t)
	const copies = 1024
	data := fdtest.Random(256<<10 + 1)
	paths := dataFiles(t, 16, data)
	for _, ec := range engineCases(t) {
		for _, table := range []string{"large", "small"} {
			t.Run(ec.name+"/"+table, func(t *testing.T) {
				var e *Engine
				if table == "small" {
					func() {
						var old unix.Rlimit
						unix.Getrlimit(unix.RLIMIT_NOFILE, &old)
						lim := old
						lim.Cur = 256
						if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
							t.Skip(err)
						}
						defer unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
						e = newTestEngine(t, ec.opts...)
					}()
				} else {
					e = newTestEngine(t, ec.opts...)
				}
				evictAll(t, paths)
				type run struct {
					w      io.Writer
					src    io.Reader
					finish func() (int64, bool)
				}
				runs := make([]run, copies)
				for i := range runs {
					kind := []string{"tcp", "pipe", "unix", "tcp"}[i%4]
					w, open, finish := gatedSink(t, kind, data)
					open()
					var src io.Reader
					switch i % 8 {
					case 3: // a socket source: the splice loop
						a, b := unixPair(t)
						t.Cleanup(func() { a.Close() })
						feedQuietly(t, b, data)
						src = a
					default:
						src = openPath(t, paths[i%len(paths)], os.O_RDONLY)
					}
					runs[i] = run{w, src, finish}
				}
				lowerNOFILE(t, highestFD(t)+1)
				var wg sync.WaitGroup
				for i, r := range runs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						n, err := e.Copy(r.w, r.src)
						got, ok := r.finish()
						if err != nil || n != int64(len(data)) || got != n || !ok {
							t.Errorf("copy %d: (%d, %v); destination got %d bytes, the file's: %v", i, n, err, got, ok)
						}
					}()
				}
				wg.Wait()
			})
		}
	}
}

// TestAdvSourceFileClosed closes a regular-file source while its copy
// waits for a destination that reads nothing yet, on every path a file
// copy takes (sendfile, warmed or not; ring reads; the splice loop),
// then lets the destination read: the copy must end, with nil or an
// error matching os.ErrClosed, and a count equal to what its destination
// got, the file's first bytes.
func TestAdvSourceFileClosed(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(8 << 20)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, sk := range []string{"tcp", "unix", "pipe"} {
			for _, evict := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/evicted=%v", ec.name, sk, evict), func(t *testing.T) {
					f := fdtest.TempFile(t, data)
					if evict {
						fdtest.Evict(t, f)
					}
					w, open, finish := gatedSink(t, sk, data)
					fut := e.CopyAsync(context.Background(), w, f)
					for fut.Written() == 0 && !isDone(fut) {
						time.Sleep(time.Millisecond)
					}
					f.Close()
					open()
					n, err := fut.Wait()
					got, ok := finish()
					if err != nil && !errors.Is(err, os.ErrClosed) {
						t.Errorf("copy = (%d, %v), want nil or os.ErrClosed", n, err)
					}
					if n != got || !ok || (err == nil && n != int64(len(data))) {
						t.Errorf("copy = (%d, %v); destination got %d bytes, the file's first: %v", n, err, got, ok)
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
