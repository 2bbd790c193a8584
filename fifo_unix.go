//go:build unix

package pipes

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"github.com/pipes-go/pipes/internal/fanout"
	"github.com/pipes-go/pipes/internal/fd"
	"golang.org/x/sys/unix"
)

// OpenFifo opens the fifo at path without blocking, in non-blocking mode
// (reads and writes wait on the Go netpoller). flag is an os.OpenFile flag:
//
//   - os.O_RDONLY returns a reader. Its Read and WriteTo wait until a
//     writer connects and writes, and see io.EOF only once the writers
//     that connected have closed (the kernel itself reports EOF at once
//     on a fifo that never had a writer; the reader waits instead).
//   - os.O_WRONLY returns a writer. If no reader has the fifo open (the
//     kernel's ENXIO for a non-blocking open), the open still succeeds;
//     writes fail with EPIPE until a reader connects. Use AsyncOpenFifo
//     to wait for a reader instead. To open a writer without a reader,
//     OpenFifo is the fifo's reader for the length of that open: a
//     writer blocked in open(2) of the fifo elsewhere (another process,
//     a shell's redirection) is woken by it, and finds no reader when it
//     writes; an AsyncOpenFifo of this process goes on waiting.
//   - os.O_RDWR returns both: a read-only and a write-only descriptor of
//     the fifo, so each can be closed on its own. The reader sees no EOF
//     while the writer is open, and EOF once it and any other writer are
//     closed; the writer's writes fail with EPIPE once the reader and any
//     other reader are closed, as a pipe's do. Both are ends of one fifo:
//     if path names another fifo by the second open, OpenFifo fails.
//
// With os.O_CREATE the fifo is created with mode's permission bits (before
// umask) if it does not exist; with os.O_EXCL too, an existing path is an
// error (fs.ErrExist). A path that exists and is not a fifo is an error.
// O_NONBLOCK in flag is accepted and implied. Errors are *fs.PathError.
func OpenFifo(path string, flag int, mode os.FileMode) (*PipeReader, *PipeWriter, error) {
	return openFifo(path, flag, mode, nil)
}

// openFifo is OpenFifo. readerOpened, if not nil, is called by an
// os.O_RDWR open between its opens of the reader and of the writer.
func openFifo(path string, flag int, mode os.FileMode, readerOpened func()) (*PipeReader, *PipeWriter, error) {
	if err := mkfifo(path, flag, mode); err != nil {
		return nil, nil, err
	}
	open := func(acc int) (*os.File, error) {
		return os.OpenFile(path, acc|flagsKept(flag)|unix.O_NONBLOCK, 0)
	}
	switch flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR) {
	case os.O_RDONLY:
		f, err := open(os.O_RDONLY)
		if err != nil {
			return nil, nil, err
		}
		if err := checkFifo(f); err != nil {
			return nil, nil, err
		}
		r := &PipeReader{f: f}
		r.awaitWriter.Store(true)
		return r, nil, nil
	case os.O_WRONLY:
		f, err := open(os.O_WRONLY)
		if errors.Is(err, syscall.ENXIO) {
			// No reader: be one for the length of the open, under
			// passingReader (see there).
			passingReader.Lock()
			tmp, terr := open(os.O_RDONLY)
			if terr != nil {
				passingReader.Unlock()
				return nil, nil, terr
			}
			f, err = open(os.O_WRONLY)
			tmp.Close()
			passingReader.Unlock()
		}
		if err != nil {
			return nil, nil, err
		}
		if err := checkFifo(f); err != nil {
			return nil, nil, err
		}
		return nil, &PipeWriter{f: f}, nil
	case os.O_RDWR:
		// A read-only and a write-only descriptor, not two O_RDWR ones,
		// each of which would be a reader and a writer of the fifo:
		// closing the writer must give the reader EOF, and closing the
		// reader the writer EPIPE, as for a pipe. The reader, opened
		// first, is there for the writer's open.
		rf, err := open(os.O_RDONLY)
		if err != nil {
			return nil, nil, err
		}
		if err := checkFifo(rf); err != nil {
			return nil, nil, err
		}
		if readerOpened != nil {
			readerOpened()
		}
		wf, err := open(os.O_WRONLY)
		if err == nil {
			err = checkFifo(wf)
		}
		if err == nil {
			err = sameFifo(path, rf, wf)
		}
		if err != nil {
			rf.Close()
			return nil, nil, err
		}
		return &PipeReader{f: rf}, &PipeWriter{f: wf}, nil
	}
	return nil, nil, &fs.PathError{Op: "open", Path: path, Err: syscall.EINVAL}
}

// AsyncOpenFifo opens the fifo at path in a new goroutine and sends the
// result on the returned channel (buffered: the goroutine never waits for
// the receiver). Unlike OpenFifo it waits for the peer: an os.O_WRONLY
// open completes once a reader has the fifo open (and, on Linux, has it
// still when the open returns: a reader that came and went, OpenFifo's
// for its open of a writer say, is waited past), an os.O_RDONLY one once a
// writer has. os.O_RDWR completes at once. If flag has os.O_CREATE the
// fifo is created before AsyncOpenFifo returns, and creation errors are
// returned directly. The open cannot be cancelled: the goroutine (and an
// OS thread, blocked in open(2)) lives until a peer opens the fifo.
func AsyncOpenFifo(path string, flag int, mode os.FileMode) (<-chan OpenFifoResult, error) {
	return asyncOpenFifo(path, flag, mode, nil)
}

// asyncOpenFifo is AsyncOpenFifo; readerOpened is openFifo's.
func asyncOpenFifo(path string, flag int, mode os.FileMode, readerOpened func()) (<-chan OpenFifoResult, error) {
	if err := mkfifo(path, flag, mode); err != nil {
		return nil, err
	}
	flag &^= os.O_CREATE | os.O_EXCL
	ch := make(chan OpenFifoResult, 1)
	go func() {
		var res OpenFifoResult
		acc := flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
		if acc == os.O_RDWR {
			res.R, res.W, res.Err = openFifo(path, flag, mode, readerOpened)
			ch <- res
			return
		}
		// A blocking open waits for the peer; os.OpenFile then puts the
		// descriptor in non-blocking mode on the netpoller.
		f, err := os.OpenFile(path, acc|flagsKept(flag&^unix.O_NONBLOCK), 0)
		for err == nil && acc == os.O_WRONLY && namedFifo(f) && !fifoHasReader(f) {
			// The open was woken by a reader that is gone again: one
			// of the fifo for the length of an open only (OpenFifo's
			// os.O_WRONLY without a reader is such an open). Its
			// writes would fail with EPIPE: wait for a reader again.
			// (Not for an anonymous pipe, whose open never waits.)
			f.Close()
			f, err = os.OpenFile(path, acc|flagsKept(flag&^unix.O_NONBLOCK), 0)
		}
		if err == nil {
			err = checkFifo(f)
		}
		switch {
		case err != nil:
			res.Err = err
		case acc == os.O_RDONLY:
			res.R = &PipeReader{f: f}
		default:
			res.W = &PipeWriter{f: f}
		}
		ch <- res
	}()
	return ch, nil
}

// sameFifo closes w and fails unless r and w are ends of one fifo: path
// may name another since r was opened by it (the fifo was removed and
// made again), and a reader and a writer of two fifos are not a pipe.
func sameFifo(path string, r, w *os.File) error {
	rs, rerr := r.Stat()
	ws, werr := w.Stat()
	err := errors.Join(rerr, werr)
	if err == nil && !os.SameFile(rs, ws) {
		err = &fs.PathError{Op: "open", Path: path, Err: errors.New("fifo replaced while opening")}
	}
	if err != nil {
		w.Close()
	}
	return err
}

// flagsKept drops the flags OpenFifo handles itself.
func flagsKept(flag int) int {
	return flag &^ (os.O_RDONLY | os.O_WRONLY | os.O_RDWR | os.O_CREATE | os.O_EXCL | os.O_TRUNC | os.O_APPEND)
}

// mkfifo creates the fifo if flag asks for it.
func mkfifo(path string, flag int, mode os.FileMode) error {
	if flag&os.O_CREATE == 0 {
		return nil
	}
	err := unix.Mkfifo(path, uint32(mode.Perm()))
	if err == nil {
		return nil
	}
	if err == unix.EEXIST && flag&os.O_EXCL == 0 {
		st, serr := os.Stat(path)
		if serr != nil {
			return serr
		}
		if st.Mode()&os.ModeNamedPipe == 0 {
			return &fs.PathError{Op: "mkfifo", Path: path, Err: fmt.Errorf("%w: not a fifo", fs.ErrExist)}
		}
		return nil
	}
	return &fs.PathError{Op: "mkfifo", Path: path, Err: err}
}

// checkFifo closes f and fails unless it is a fifo.
func checkFifo(f *os.File) error {
	st, err := f.Stat()
	if err == nil && st.Mode()&os.ModeNamedPipe == 0 {
		err = &fs.PathError{Op: "open", Path: f.Name(), Err: errors.New("not a fifo")}
	}
	if err != nil {
		f.Close()
	}
	return err
}

// readFifo reads from a read-only fifo that may not have had a writer
// yet: while none has connected, it waits on the netpoller instead of
// returning the kernel's EOF. A fifo read end reports POLLHUP only once a
// writer has connected and all writers have gone again.
func (r *PipeReader) readFifo(p []byte) (int, error) {
	if len(p) == 0 {
		return r.f.Read(p) // 0, nil, or the error of a closed file
	}
	rc, err := r.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			m, e := unix.Read(int(fd), p)
			switch {
			case m > 0:
				n = m
				r.awaitWriter.Store(false)
				return true
			case e == unix.EINTR:
				continue
			case e == unix.EAGAIN:
				return false
			case e != nil:
				rerr = &fs.PathError{Op: "read", Path: r.f.Name(), Err: e}
				return true
			}
			switch ev := fifoEvents(int(fd)); {
			case ev&unix.POLLIN != 0:
				continue // a writer came and wrote meanwhile
			case ev&unix.POLLHUP != 0:
				r.awaitWriter.Store(false)
				rerr = io.EOF
				return true
			}
			return false
		}
	})
	if err != nil {
		return n, r.waitErr(err)
	}
	return n, rerr
}

// awaitFirstWriter waits, for WriteTo, until a read-only fifo has had a
// writer: bytes to read, or every writer gone again.
func (r *PipeReader) awaitFirstWriter() error {
	if r == nil || !r.awaitWriter.Load() {
		return nil
	}
	rc, err := r.f.SyscallConn()
	if err != nil {
		return err
	}
	err = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, 0); err != nil {
			return false
		}
		return fds[0].Revents != 0
	})
	if err != nil {
		return r.waitErr(err)
	}
	r.awaitWriter.Store(false)
	return nil
}

// waitErr is the error of a wait on the read end's RawConn as
// (*os.File).Read reports it: an *fs.PathError, wrapping os.ErrClosed
// once the file is closed (the RawConn reports internal/poll's "use of
// closed file", which only os.File's own methods translate), or the
// deadline's os.ErrDeadlineExceeded.
func (r *PipeReader) waitErr(err error) error {
	if fileClosed(r.f) {
		err = os.ErrClosed
	}
	return &fs.PathError{Op: "read", Path: r.f.Name(), Err: err}
}

// idleWatch is how a Copier with no writer watches its reader
// (fanout.Watch): waitEnded, interrupted by a read deadline in the past.
func (r *PipeReader) idleWatch() fanout.Watch {
	d := fd.Of(nil, r)
	return fanout.Watch{Wait: r.waitEnded, Interrupt: d.Wake, Reset: d.Reset}
}

// waitEnded waits on the netpoller, reading nothing, until the reader has
// ended: no byte left and no writer (POLLHUP without POLLIN: eof), or the
// reader is closed or its wait fails (err, as Read reports it). A
// read-only fifo that has had no writer yet has not ended, nor has a pipe
// whose writers are gone with bytes left in it.
func (r *PipeReader) waitEnded() (eof bool, err error) {
	rc, err := r.f.SyscallConn()
	if err != nil {
		return false, err
	}
	err = rc.Read(func(sysfd uintptr) bool {
		ev := fifoEvents(int(sysfd))
		return ev&unix.POLLHUP != 0 && ev&unix.POLLIN == 0
	})
	if err != nil {
		return false, r.waitErr(err)
	}
	return true, nil
}

// passingReader is held by an OpenFifo(os.O_WRONLY) while it is a reader
// of the fifo for the length of its open of the writer (the kernel
// refuses a non-blocking writer while there is no reader). That reader
// wakes the writers blocked in an open of the fifo: an AsyncOpenFifo's
// writer looks for a reader only once no OpenFifo of this process is
// passing, so as not to take one for a reader (a blocking open(2) of
// the fifo by another process is woken all the same, and finds no
// reader as soon as it writes).
var passingReader sync.Mutex

// fifoHasReader reports whether f, a write end, has a reader: poll(2)
// reports POLLERR (whatever the events asked) on the write end of a pipe
// or fifo that has none, and a poll that fails counts as a reader. For
// anything else (not a fifo: checkFifo refuses it next) it reports true.
// It waits for a passing reader to be gone first (passingReader).
func fifoHasReader(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return true
	}
	passingReader.Lock()
	defer passingReader.Unlock()
	has := true
	rc.Control(func(fd uintptr) { has = fifoEvents(int(fd))&unix.POLLERR == 0 })
	return has
}

// fifoEvents polls fd without waiting; 0 if poll fails.
func fifoEvents(fd int) int16 {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if _, err := unix.Poll(fds, 0); err != nil {
		return 0
	}
	return fds[0].Revents
}
