//go:build linux

package main

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// This file holds the bench's own splice(2)/sendfile(2) code: the
// "splice loop" baseline strategy and the harness's feeders and drainers.
// Every syscall on a pipe or socket runs inside a syscall.RawConn callback,
// as Go's internal/poll does, so that it holds Go's fd reference and waits
// for readiness on the netpoller instead of parking an OS thread.

const spliceFlags = unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK

// maxChunk bounds one splice or sendfile call.
const maxChunk = 4 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// fdKind is what fstat says a descriptor is.
type fdKind int

const (
	fdOther fdKind = iota
	fdFile
	fdPipe
	fdSocket
)

// rawFD is one side of a copy: its RawConn, what it is, and the value that
// owns the descriptor (kept alive while the number is in use).
type rawFD struct {
	rc    syscall.RawConn
	kind  fdKind
	fd    int // for regular files only: they never block, so no callback is needed
	owner any
}

func newRawFD(v any) (rawFD, error) {
	sc, ok := v.(syscall.Conn)
	if !ok {
		return rawFD{}, fmt.Errorf("%T has no file descriptor", v)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return rawFD{}, err
	}
	r := rawFD{rc: rc, owner: v, fd: -1}
	var serr error
	err = rc.Control(func(fd uintptr) {
		var st unix.Stat_t
		if serr = unix.Fstat(int(fd), &st); serr != nil {
			return
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			r.kind, r.fd = fdFile, int(fd)
		case unix.S_IFIFO:
			r.kind = fdPipe
		case unix.S_IFSOCK:
			r.kind = fdSocket
		}
	})
	if err == nil {
		err = serr
	}
	return r, err
}

// read runs op on the descriptor until it stops reporting EAGAIN, waiting
// for readability in between.
func (r rawFD) read(op func(fd int) error) error {
	if r.kind == fdFile {
		return op(r.fd)
	}
	var opErr error
	err := r.rc.Read(func(fd uintptr) bool {
		opErr = op(int(fd))
		return opErr != unix.EAGAIN
	})
	if err != nil {
		return err
	}
	return opErr
}

// write is read's counterpart for writability.
func (r rawFD) write(op func(fd int) error) error {
	if r.kind == fdFile {
		return op(r.fd)
	}
	var opErr error
	err := r.rc.Write(func(fd uintptr) bool {
		opErr = op(int(fd))
		return opErr != unix.EAGAIN
	})
	if err != nil {
		return err
	}
	return opErr
}

// pipePair is an intermediate pipe.
type pipePair struct{ r, w int }

func newPipePair(size int) (pipePair, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return pipePair{}, err
	}
	if size > 0 {
		// Refused past the per-user pipe quota; the pipe then keeps its size.
		_, _ = unix.FcntlInt(uintptr(p[0]), unix.F_SETPIPE_SZ, size)
	}
	return pipePair{r: p[0], w: p[1]}, nil
}

func (p pipePair) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// pipeCache keeps a few empty intermediate pipes for the splice loop, as
// Go's internal/poll pools its own: a pipe with bytes left in it is closed,
// never reused.
type pipeCache struct {
	size int
	free chan pipePair
}

func newPipeCache(size, keep int) *pipeCache {
	return &pipeCache{size: size, free: make(chan pipePair, keep)}
}

func (c *pipeCache) get() (pipePair, error) {
	select {
	case p := <-c.free:
		return p, nil
	default:
		return newPipePair(c.size)
	}
}

func (c *pipeCache) put(p pipePair, empty bool) {
	if !empty {
		p.close()
		return
	}
	select {
	case c.free <- p:
	default:
		p.close()
	}
}

// spliceN is unix.Splice with an int count.
func spliceN(rfd int, roff *int64, wfd int, woff *int64, n int, flags int) (int, error) {
	m, err := unix.Splice(rfd, roff, wfd, woff, n, flags)
	return int(m), err
}

func retryEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if err != unix.EINTR {
			return n, err
		}
	}
}

// spliceLoop copies src to dst with splice(2) only: directly between a
// regular file and a pipe, else through an intermediate pipe from cache
// (fill it from src while src is readable, drain it into dst while dst is
// writable). It honours *io.LimitedReader. This is the baseline a kernel
// copy library has to match.
func spliceLoop(dst io.Writer, src io.Reader, cache *pipeCache) (written int64, err error) {
	limit := int64(-1)
	if lr, ok := src.(*io.LimitedReader); ok {
		limit, src = lr.N, lr.R
		defer func() { lr.N -= written }()
	}
	s, err := newRawFD(src)
	if err != nil {
		return 0, err
	}
	d, err := newRawFD(dst)
	if err != nil {
		return 0, err
	}
	defer runtime.KeepAlive(s.owner)
	defer runtime.KeepAlive(d.owner)
	chunk := func() int {
		c := int64(cache.size)
		if limit >= 0 && limit-written < c {
			c = limit - written
		}
		return int(c)
	}
	if (s.kind == fdFile && d.kind == fdPipe) || (s.kind == fdPipe && d.kind == fdFile) {
		for limit < 0 || written < limit {
			var n int
			op := func(sfd, dfd int) error {
				var e error
				n, e = retryEINTR(func() (int, error) { return spliceN(sfd, nil, dfd, nil, chunk(), spliceFlags) })
				return e
			}
			if s.kind == fdFile {
				err = d.write(func(fd int) error { return op(s.fd, fd) })
			} else {
				err = s.read(func(fd int) error { return op(fd, d.fd) })
			}
			if n > 0 {
				written += int64(n)
			}
			if err != nil || n == 0 {
				return written, err
			}
		}
		return written, nil
	}
	p, err := cache.get()
	if err != nil {
		return 0, err
	}
	inPipe := 0
	defer func() { cache.put(p, inPipe == 0) }()
	for limit < 0 || written < limit {
		var n int
		err = s.read(func(fd int) error {
			var e error
			n, e = retryEINTR(func() (int, error) { return spliceN(fd, nil, p.w, nil, chunk(), spliceFlags) })
			return e
		})
		if err != nil || n == 0 {
			return written, err
		}
		inPipe = n
		for inPipe > 0 {
			var m int
			err = d.write(func(fd int) error {
				var e error
				m, e = retryEINTR(func() (int, error) { return spliceN(p.r, nil, fd, nil, inPipe, spliceFlags) })
				return e
			})
			if m > 0 {
				inPipe -= m
				written += int64(m)
			}
			if err != nil {
				return written, err
			}
			if m == 0 {
				return written, io.ErrShortWrite
			}
		}
	}
	return written, nil
}

// sendfileAll writes n bytes of data from offset off into dst with
// sendfile(2), which takes the offset explicitly so that any number of
// feeders can share one data file descriptor.
func sendfileAll(dst rawFD, data *os.File, off, n int64) error {
	defer runtime.KeepAlive(data)
	dfd := int(data.Fd())
	end := off + n
	for off < end {
		var m int
		err := dst.write(func(fd int) error {
			var e error
			m, e = retryEINTR(func() (int, error) {
				return unix.Sendfile(fd, dfd, &off, int(min(end-off, maxChunk)))
			})
			return e
		})
		if err != nil {
			return err
		}
		if m == 0 {
			return io.ErrUnexpectedEOF
		}
	}
	return nil
}

// drainer empties the reading end of a copy's destination until EOF.
type drainer struct {
	devNull *os.File
	pipes   *pipeCache
}

// discard splices src to /dev/null (through an intermediate pipe unless
// src is a pipe) and returns the bytes seen: no data is copied to
// userspace, so the harness adds as little as it can to the process's
// CPU and syscall counts.
func (d *drainer) discard(src rawFD) (int64, error) {
	defer runtime.KeepAlive(src.owner)
	defer runtime.KeepAlive(d.devNull)
	null := int(d.devNull.Fd())
	var total int64
	if src.kind == fdPipe {
		for {
			var n int
			err := src.read(func(fd int) error {
				var e error
				n, e = retryEINTR(func() (int, error) { return spliceN(fd, nil, null, nil, maxChunk, spliceFlags) })
				return e
			})
			total += int64(n)
			if err != nil || n == 0 {
				return total, err
			}
		}
	}
	return d.discardN(src, math.MaxInt64)
}

// checksum reads src through userspace until EOF and returns the byte count
// and the CRC-32C of the bytes.
func checksum(src rawFD) (int64, uint32, error) {
	defer runtime.KeepAlive(src.owner)
	buf := make([]byte, 256<<10)
	var total int64
	var sum uint32
	for {
		var n int
		err := src.read(func(fd int) error {
			var e error
			n, e = retryEINTR(func() (int, error) { return unix.Read(fd, buf) })
			return e
		})
		if err != nil {
			return total, sum, err
		}
		if n == 0 {
			return total, sum, nil
		}
		sum = crc32.Update(sum, castagnoli, buf[:n])
		total += int64(n)
	}
}

// fileChecksum returns the CRC-32C of n bytes of f from offset off.
func fileChecksum(f *os.File, off, n int64) (uint32, error) {
	h := crc32.New(castagnoli)
	m, err := io.Copy(h, io.NewSectionReader(f, off, n))
	if err == nil && m != n {
		err = fmt.Errorf("%s: %d bytes at %d: %w", f.Name(), n, off, io.ErrUnexpectedEOF)
	}
	return h.Sum32(), err
}

// warmFile reads the first n bytes of f into the page cache with
// sendfile(2) to /dev/null.
func warmFile(f, devNull *os.File, n int64) error {
	defer runtime.KeepAlive(f)
	defer runtime.KeepAlive(devNull)
	var off int64
	for off < n {
		m, err := retryEINTR(func() (int, error) {
			return unix.Sendfile(int(devNull.Fd()), int(f.Fd()), &off, int(min(n-off, 1<<30)))
		})
		if err != nil {
			return fmt.Errorf("warming %s: %w", f.Name(), err)
		}
		if m == 0 {
			return fmt.Errorf("warming %s: %w", f.Name(), io.ErrUnexpectedEOF)
		}
	}
	return nil
}

// dropCaches writes back dirty pages and empties the page cache.
func dropCaches() error {
	unix.Sync()
	err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0)
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("-cold needs root: %w", err)
	}
	return err
}
