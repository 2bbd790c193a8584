//go:build linux

package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// dataset holds the source data: one file of pseudo-random bytes (the
// "master") and exact-size prefixes of it, kept in dir between runs. The
// expected checksums are always computed from the files themselves.
type dataset struct {
	dir    string
	master *os.File
	size   int64

	mu    sync.Mutex
	files map[int64]*os.File
	sums  map[[3]int64]uint32 // {file size, off, n} -> CRC-32C
}

const masterName = "pipes-bench-data"

func openDataset(dir string, size int64) (*dataset, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ds := &dataset{dir: dir, size: size, files: map[int64]*os.File{}, sums: map[[3]int64]uint32{}}
	// A larger master from an earlier run serves too: it starts with the
	// same bytes (same seed), and checksums come from the files anyway.
	f, err := ensureFile(filepath.Join(dir, masterName), size, true, func(w *os.File) error {
		return fillRandom(w, size)
	})
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	ds.master, ds.size = f, st.Size()
	ds.files[ds.size] = f
	return ds, nil
}

// ensureFile opens path if it exists with the right size (or larger, with
// orLarger), else builds it with fill under a temporary name.
func ensureFile(path string, size int64, orLarger bool, fill func(*os.File) error) (*os.File, error) {
	if f, err := os.Open(path); err == nil {
		if st, err := f.Stat(); err == nil && (st.Size() == size || orLarger && st.Size() > size) {
			return f, nil
		}
		f.Close()
	}
	tmp := path + ".tmp"
	w, err := os.Create(tmp)
	if err != nil {
		return nil, err
	}
	if err := fill(w); err != nil {
		w.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("building %s: %w", path, err)
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, err
	}
	return os.Open(path)
}

func fillRandom(w *os.File, size int64) error {
	_, err := io.CopyN(w, rand.NewChaCha8([32]byte{'p', 'i', 'p', 'e', 's'}), size)
	return err
}

// file returns a file holding exactly the first size bytes of the master.
func (ds *dataset) file(size int64) (*os.File, error) {
	if size > ds.size {
		return nil, fmt.Errorf("dataset of %d bytes cannot serve %d", ds.size, size)
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if f := ds.files[size]; f != nil {
		return f, nil
	}
	path := filepath.Join(ds.dir, fmt.Sprintf("%s-%d", masterName, size))
	f, err := ensureFile(path, size, false, func(w *os.File) error {
		_, err := io.Copy(w, io.NewSectionReader(ds.master, 0, size))
		return err
	})
	if err != nil {
		return nil, err
	}
	ds.files[size] = f
	return f, nil
}

// sum returns the CRC-32C of n bytes at off of the size-byte file.
func (ds *dataset) sum(size, off, n int64) (uint32, error) {
	key := [3]int64{size, off, n}
	ds.mu.Lock()
	s, ok := ds.sums[key]
	ds.mu.Unlock()
	if ok {
		return s, nil
	}
	f, err := ds.file(size)
	if err != nil {
		return 0, err
	}
	s, err = fileChecksum(f, off, n)
	if err != nil {
		return 0, err
	}
	ds.mu.Lock()
	ds.sums[key] = s
	ds.mu.Unlock()
	return s, nil
}

func (ds *dataset) close() {
	for _, f := range ds.files {
		f.Close()
	}
}

// world is what endpoints share: the dataset, /dev/null, a TCP listener.
type world struct {
	ds       *dataset
	devNull  *os.File
	ln       *net.TCPListener
	pipeSize int
	drain    *drainer
	lnMu     sync.Mutex
}

func newWorld(ds *dataset, pipeSize int) (*world, error) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		null.Close()
		return nil, err
	}
	return &world{
		ds: ds, devNull: null, ln: ln, pipeSize: pipeSize,
		drain: &drainer{devNull: null, pipes: newPipeCache(pipeSize, 64)},
	}, nil
}

func (w *world) close() {
	w.ln.Close()
	w.devNull.Close()
}

// tcpPair returns both ends of a fresh loopback TCP connection.
func (w *world) tcpPair() (client, server *net.TCPConn, err error) {
	w.lnMu.Lock()
	defer w.lnMu.Unlock()
	c, err := net.DialTCP("tcp", nil, w.ln.Addr().(*net.TCPAddr))
	if err != nil {
		return nil, nil, err
	}
	s, err := w.ln.AcceptTCP()
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, s, nil
}

// unixPair returns both ends of a fresh unix stream socketpair.
func unixPair() (a, b *net.UnixConn, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	conns := make([]*net.UnixConn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			if i == 1 {
				conns[0].Close()
			}
			if i == 0 {
				unix.Close(fds[1])
			}
			return nil, nil, err
		}
		conns[i] = c.(*net.UnixConn)
	}
	return conns[0], conns[1], nil
}

func (w *world) pipe() (r, wr *os.File, err error) {
	r, wr, err = os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	if w.pipeSize > 0 {
		rc, _ := r.SyscallConn()
		_ = rc.Control(func(fd uintptr) {
			_, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, w.pipeSize)
		})
	}
	return r, wr, nil
}

// closeAll closes sockets with SO_LINGER 0 once their data has been
// delivered, so that thousands of loopback connections per rep leave no
// TIME_WAIT behind.
func closeAll(cs []io.Closer) {
	for _, c := range cs {
		if t, ok := c.(*net.TCPConn); ok {
			_ = t.SetLinger(0)
		}
		c.Close()
	}
}

// source is what a strategy reads from, plus the feeder that fills it.
type source struct {
	r       io.Reader
	feed    func() error // nil for regular files; writes the data, then EOF
	closers []io.Closer
}

// newSource builds a source of kind k delivering n bytes at off of the
// size-byte data file. For regular files the reader is the file itself
// when it covers the whole file, else an *io.LimitedReader of a file
// positioned at off.
func (w *world) newSource(k kind, size, off, n int64) (*source, error) {
	data, err := w.ds.file(size)
	if err != nil {
		return nil, err
	}
	switch k {
	case kindFile:
		f, err := os.Open(data.Name())
		if err != nil {
			return nil, err
		}
		if off == 0 && n == size {
			return &source{r: f, closers: []io.Closer{f}}, nil
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		return &source{r: &io.LimitedReader{R: f, N: n}, closers: []io.Closer{f}}, nil
	case kindPipe:
		r, wr, err := w.pipe()
		if err != nil {
			return nil, err
		}
		return &source{r: r, closers: []io.Closer{r, wr}, feed: func() error {
			defer wr.Close()
			return feed(wr, data, off, n)
		}}, nil
	case kindUnix:
		a, b, err := unixPair()
		if err != nil {
			return nil, err
		}
		return &source{r: a, closers: []io.Closer{a, b}, feed: func() error {
			defer b.CloseWrite()
			return feed(b, data, off, n)
		}}, nil
	case kindTCP:
		c, s, err := w.tcpPair()
		if err != nil {
			return nil, err
		}
		return &source{r: s, closers: []io.Closer{s, c}, feed: func() error {
			defer c.CloseWrite()
			return feed(c, data, off, n)
		}}, nil
	}
	return nil, fmt.Errorf("unknown source kind %q", k)
}

func feed(dst any, data *os.File, off, n int64) error {
	fd, err := newRawFD(dst)
	if err != nil {
		return err
	}
	if err := sendfileAll(fd, data, off, n); err != nil {
		return fmt.Errorf("feeder: %w", err)
	}
	return nil
}

// sink is what a strategy writes to, plus the drainer that empties it.
type sink struct {
	w       io.Writer
	closers []io.Closer
	// finish tells the drainer that no more bytes come (closes the
	// writing side) and returns what it received: the byte count, and the
	// CRC-32C when the sink was built with verify.
	finish func() (int64, uint32, error)
}

type drainResult struct {
	n   int64
	sum uint32
	err error
}

// newSink builds a destination of kind k. Its drainer starts now and runs
// until finish: splice to /dev/null, or with verify, a read into userspace
// and a checksum.
func (w *world) newSink(k kind, verify bool) (*sink, error) {
	switch k {
	case kindFile:
		f, err := os.CreateTemp(w.ds.dir, "pipes-bench-out-*")
		if err != nil {
			return nil, err
		}
		os.Remove(f.Name())
		return &sink{w: f, closers: []io.Closer{f}, finish: func() (int64, uint32, error) {
			st, err := f.Stat()
			if err != nil {
				return 0, 0, err
			}
			if !verify {
				return st.Size(), 0, nil
			}
			sum, err := fileChecksum(f, 0, st.Size())
			return st.Size(), sum, err
		}}, nil
	case kindPipe:
		r, wr, err := w.pipe()
		if err != nil {
			return nil, err
		}
		return w.drained(wr, r, func() error { return wr.Close() }, verify, []io.Closer{r, wr})
	case kindUnix:
		a, b, err := unixPair()
		if err != nil {
			return nil, err
		}
		return w.drained(a, b, a.CloseWrite, verify, []io.Closer{a, b})
	case kindTCP:
		c, s, err := w.tcpPair()
		if err != nil {
			return nil, err
		}
		return w.drained(c, s, c.CloseWrite, verify, []io.Closer{c, s})
	}
	return nil, fmt.Errorf("unknown destination kind %q", k)
}

func (w *world) drained(wr io.Writer, peer any, closeWrite func() error, verify bool, closers []io.Closer) (*sink, error) {
	fd, err := newRawFD(peer)
	if err != nil {
		closeAll(closers)
		return nil, err
	}
	done := make(chan drainResult, 1)
	go func() {
		var r drainResult
		if verify {
			r.n, r.sum, r.err = checksum(fd)
		} else {
			r.n, r.err = w.drain.discard(fd)
		}
		done <- r
		runtime.KeepAlive(peer)
	}()
	return &sink{w: wr, closers: closers, finish: func() (int64, uint32, error) {
		cerr := closeWrite()
		r := <-done
		if r.err == nil {
			r.err = cerr
		}
		return r.n, r.sum, r.err
	}}, nil
}
