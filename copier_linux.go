package pipes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/pipes-go/pipes/splice"
	"golang.org/x/sys/unix"
)

// Copier copies everything written to one pipe to many, in the kernel: a
// goroutine duplicates each chunk with tee(2) into a private pipe per
// writer and splices it from there into the writer. Writers see the same
// bytes in the same order, from the moment they were added. The slowest
// writer sets the pace (the source is consumed only once every writer has
// taken a chunk), so a stalled writer stalls all of them; a writer that
// fails (its reader closed: EPIPE, or any other error) is evicted and the
// others go on. Bytes are never drained through a userspace buffer, and
// while there is no writer nothing is read from the source.
//
// The Copier stops when the source reaches EOF (every write end closed),
// when reading it fails, or when its context ends; Wait reports why. It
// never closes the reader or the writers.
type Copier struct {
	ctx  context.Context
	r    *PipeReader
	rc   syscall.RawConn
	null int // /dev/null: where consumed bytes go
	size int // source pipe size: each writer's private pipe is at least this big

	mu      sync.Mutex
	pending []*copierWriter
	writers []*copierWriter
	stopped bool
	err     error
	kick    chan struct{}
	done    chan struct{}
}

type copierWriter struct {
	w    *PipeWriter
	rc   syscall.RawConn
	buf  *splice.Pipe
	left int // bytes in buf not yet delivered
}

// NewCopier starts copying from r to writers (none is fine: see Add) until
// r reaches EOF or ctx ends. It fails if r or a writer has no usable
// descriptor, or if the private pipes or /dev/null cannot be opened.
func NewCopier(ctx context.Context, r *PipeReader, writers ...*PipeWriter) (*Copier, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if r == nil {
		return nil, errors.New("pipes: NewCopier: nil reader")
	}
	rc, err := r.SyscallConn()
	if err != nil {
		return nil, err
	}
	size := 0
	if cerr := rc.Control(func(fd uintptr) {
		size, err = unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0)
	}); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, fmt.Errorf("pipes: NewCopier: source is not a pipe: %w", os.NewSyscallError("fcntl", err))
	}
	null, err := unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/dev/null", Err: err}
	}
	c := &Copier{ctx: ctx, r: r, rc: rc, null: null, size: size, kick: make(chan struct{}, 1), done: make(chan struct{})}
	for _, w := range writers {
		cw, err := c.newWriter(w)
		if err != nil {
			c.closeWriters(c.pending)
			unix.Close(null)
			return nil, err
		}
		c.pending = append(c.pending, cw)
	}
	go c.run()
	return c, nil
}

func (c *Copier) newWriter(w *PipeWriter) (*copierWriter, error) {
	if w == nil {
		return nil, errors.New("pipes: Copier: nil writer")
	}
	rc, err := w.SyscallConn()
	if err != nil {
		return nil, err
	}
	buf, err := splice.NewPipe(c.size)
	if err != nil {
		return nil, err
	}
	return &copierWriter{w: w, rc: rc, buf: buf}, nil
}

// Add adds a writer. It receives the bytes the copier reads from now on.
// It fails with ErrCopierStopped once the copier has stopped.
func (c *Copier) Add(w *PipeWriter) error {
	c.mu.Lock()
	stopped := c.stopped
	c.mu.Unlock()
	if stopped {
		return ErrCopierStopped
	}
	cw, err := c.newWriter(w)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		cw.buf.Close()
		return ErrCopierStopped
	}
	c.pending = append(c.pending, cw)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return nil
}

// Writers returns how many writers the copier is copying to (added and not
// evicted).
func (c *Copier) Writers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.writers) + len(c.pending)
}

// Wait blocks until the copier stops and returns nil if the source reached
// EOF, or else the error that stopped it: one wrapping ctx.Err(), or the
// source's read error.
func (c *Copier) Wait() error {
	<-c.done
	return c.err
}

func (c *Copier) run() {
	// Cancelling ctx wakes waits on the source and the writers.
	stopWake := context.AfterFunc(c.ctx, func() {
		c.r.SetReadDeadline(aLongTimeAgo)
		c.mu.Lock()
		for _, w := range c.writers {
			w.w.SetWriteDeadline(aLongTimeAgo)
		}
		c.mu.Unlock()
	})
	err := c.loop()
	if !stopWake() {
		c.r.SetReadDeadline(time.Time{})
	}
	if err != nil && c.ctx.Err() != nil && !errors.Is(err, c.ctx.Err()) {
		err = fmt.Errorf("pipes: copier: %w (%w)", c.ctx.Err(), err)
	}
	c.mu.Lock()
	c.stopped = true
	c.err = err
	ws := append(c.writers, c.pending...)
	c.writers, c.pending = nil, nil
	c.mu.Unlock()
	if c.ctx.Err() != nil {
		for _, w := range ws {
			w.w.SetWriteDeadline(time.Time{})
		}
	}
	c.closeWriters(ws)
	unix.Close(c.null)
	close(c.done)
}

func (c *Copier) closeWriters(ws []*copierWriter) {
	for _, w := range ws {
		w.buf.Close()
	}
}

func (c *Copier) loop() error {
	for {
		if err := c.ctx.Err(); err != nil {
			return fmt.Errorf("pipes: copier: %w", err)
		}
		if len(c.adopt()) == 0 {
			select {
			case <-c.kick:
			case <-c.ctx.Done():
			}
			continue
		}
		eof, err := c.round()
		if err != nil || eof {
			return err
		}
	}
}

// adopt moves the writers added since the last round into the copy and
// returns them all.
func (c *Copier) adopt() []*copierWriter {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) > 0 {
		c.writers = append(c.writers, c.pending...)
		c.pending = c.pending[:0]
		// Tee into the smallest private pipe first: it bounds the chunk,
		// which the bigger ones then take whole.
		slices.SortStableFunc(c.writers, func(a, b *copierWriter) int { return a.buf.Size() - b.buf.Size() })
	}
	return slices.Clone(c.writers)
}

// round waits for bytes in the source, tees one chunk to every writer's
// private pipe, consumes it from the source, and delivers it.
func (c *Copier) round() (eof bool, err error) {
	var evict, ws []*copierWriter
	var k int
	err = c.rc.Read(func(fd uintptr) bool {
		avail, e := unix.IoctlGetInt(int(fd), unix.TIOCINQ)
		if e != nil {
			err = os.NewSyscallError("ioctl", e)
			return true
		}
		if avail == 0 {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			unix.Poll(fds, 0)
			if fds[0].Revents&unix.POLLHUP != 0 {
				eof = true
				return true
			}
			return c.ctx.Err() != nil // wait for bytes (or the wake)
		}
		// Writers added while the source was idle get this chunk too.
		ws = c.adopt()
		k = avail
		for i, w := range ws {
			m, e := splice.Tee(int(fd), w.buf.WriteFd(), k, splice.FlagNonblock)
			if i == 0 && m > 0 {
				k = m
			}
			if m != k || e != nil {
				evict = append(evict, w) // cannot happen with an empty private pipe
				continue
			}
			w.left = m
		}
		// Consume the chunk from the source.
		for left := k; left > 0; {
			m, e := splice.Splice(int(fd), nil, c.null, nil, left, splice.FlagNonblock)
			if m <= 0 || e != nil {
				err = fmt.Errorf("pipes: copier: consuming %d bytes: %w", left, os.NewSyscallError("splice", e))
				return true
			}
			left -= m
		}
		return true
	})
	if err != nil || eof {
		if err != nil && c.ctx.Err() != nil {
			err = fmt.Errorf("pipes: copier: %w (%w)", c.ctx.Err(), err)
		}
		return eof, err
	}
	for _, w := range ws {
		if w.left == 0 || slices.Contains(evict, w) {
			continue
		}
		if derr := c.deliver(w); derr != nil {
			if c.ctx.Err() != nil {
				return false, fmt.Errorf("pipes: copier: %w", c.ctx.Err())
			}
			evict = append(evict, w)
		}
	}
	if len(evict) > 0 {
		c.mu.Lock()
		c.writers = slices.DeleteFunc(c.writers, func(w *copierWriter) bool { return slices.Contains(evict, w) })
		c.mu.Unlock()
		for _, w := range evict {
			w.buf.Close()
		}
	}
	return false, nil
}

// deliver splices w's private pipe into w, waiting on the netpoller while
// w is full.
func (c *Copier) deliver(w *copierWriter) error {
	var err error
	werr := w.rc.Write(func(fd uintptr) bool {
		for w.left > 0 {
			m, e := splice.Splice(w.buf.ReadFd(), nil, int(fd), nil, w.left, splice.FlagMove|splice.FlagNonblock)
			if m > 0 {
				w.left -= m
				continue
			}
			switch {
			case e == unix.EAGAIN:
				return c.ctx.Err() != nil
			case e != nil:
				err = os.NewSyscallError("splice", e)
			default:
				err = io.ErrShortWrite
			}
			return true
		}
		return true
	})
	if werr != nil {
		return werr
	}
	return err
}
