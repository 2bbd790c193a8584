package pipes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	"github.com/pipes-go/pipes/internal/ctxerr"
	"github.com/pipes-go/pipes/internal/fanout"
)

// ErrCopierStopped is returned by Copier.Add once the copier has stopped:
// its source reached EOF or failed, or its context ended.
var ErrCopierStopped = errors.New("pipes: copier stopped")

// errCopierWriterTwice is the error of adding a writer a Copier already
// writes to: two private pipes spliced into one pipe would interleave
// their chunks.
var errCopierWriterTwice = fmt.Errorf("pipes: Copier: writer added twice: %w", os.ErrInvalid)

// Copier copies everything written to one pipe to many, reading the pipe
// once: a fan-out (see FanOut) whose writers can join with Add and leave
// while it runs. On Linux the bytes never enter the process: each chunk
// is duplicated with tee(2) into a private pipe per writer and spliced
// from there into the writer, waiting on the netpoller. Elsewhere each
// chunk is read into a userspace buffer and written to every writer.
//
// Writers see the same bytes in the same order, from the moment they were
// added. The slowest writer sets the pace (the source is consumed only as
// fast as every writer takes it), so a stalled writer stalls all of them;
// a writer that fails (its reader closed: EPIPE, or any other error) is
// evicted and the others go on. While there is no writer nothing is read
// from the source (off Linux, a read already waiting when the last writer
// leaves still completes, and its bytes are dropped).
//
// The Copier stops when the source reaches EOF (every write end closed),
// when reading it fails, or when its context ends; Wait reports why. With
// no writer it still sees the source end, reading nothing: EOF once
// every write end is closed and the pipe is empty (bytes left in it wait
// for the next writer), or the reader closed. It never closes the reader
// or the writers.
type Copier struct {
	ctx  context.Context
	src  *PipeReader
	fan  copierFan
	done chan struct{}

	joinMu  sync.Mutex // held by a join from its check to its admission
	mu      sync.Mutex
	writers []*fanout.Dest // added and not known to have left; nil once stopped
	added   int            // writers ever added: the index of the next one
	stopped bool
	err     error
}

// copierFan is the fan-out a Copier runs on: the kernel's on Linux
// (copier_linux.go), the userspace one elsewhere (userspaceCopierFan).
type copierFan interface {
	// join queues d, writing to w, for admission between two chunks. It
	// fails with fanout.ErrEnded once the fan-out has ended, or if d
	// cannot be prepared (a private pipe).
	join(d *fanout.Dest, w *PipeWriter) error
	// run runs the fan-out from src until src ends or ctx ends, waits
	// for the writers, releases what the fan-out holds, and returns nil
	// on EOF, src's error, or an error wrapping ctx.Err(). The caller
	// interrupts the reads of src when ctx ends.
	run(src *PipeReader) error
	// abort releases what a fan-out that will never run holds.
	abort()
}

// NewCopier starts copying from r to writers (none is fine: see Add) until
// r reaches EOF or ctx ends. A nil ctx means context.Background(). It
// fails if r or a writer is nil (an error matching os.ErrInvalid, as a
// nil *os.File's methods fail) or has no usable descriptor (one closed
// already: an error matching os.ErrClosed), if a writer is given twice
// (os.ErrInvalid), or, on Linux, if r is not a pipe or the private pipes
// or /dev/null cannot be opened.
func NewCopier(ctx context.Context, r *PipeReader, writers ...*PipeWriter) (*Copier, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if r == nil {
		return nil, fmt.Errorf("pipes: NewCopier: nil reader: %w", os.ErrInvalid)
	}
	if err := usable(r.f, "read"); err != nil {
		return nil, err
	}
	fan, err := newCopierFan(ctx, r)
	if err != nil {
		return nil, err
	}
	return startCopier(ctx, r, fan, writers)
}

// startCopier adds writers to fan, which reads r, and runs it.
func startCopier(ctx context.Context, r *PipeReader, fan copierFan, writers []*PipeWriter) (*Copier, error) {
	c := &Copier{ctx: ctx, src: r, fan: fan, done: make(chan struct{})}
	for _, w := range writers {
		if err := c.join(w); err != nil {
			fan.abort()
			return nil, err
		}
	}
	go c.run()
	return c, nil
}

// Add adds a writer. It receives the bytes the copier reads from now on.
// It fails with ErrCopierStopped once the copier has stopped, if w is nil
// (an error matching os.ErrInvalid) or closed (os.ErrClosed), if the
// copier writes to w already (os.ErrInvalid: two streams into one pipe
// would interleave), and, on Linux, if its private pipe cannot be
// opened.
func (c *Copier) Add(w *PipeWriter) error {
	c.mu.Lock()
	stopped := c.stopped
	c.mu.Unlock()
	if stopped {
		return ErrCopierStopped
	}
	return c.join(w)
}

func (c *Copier) join(w *PipeWriter) error {
	if w == nil {
		return fmt.Errorf("pipes: Copier: nil writer: %w", os.ErrInvalid)
	}
	if err := usable(w.f, "write"); err != nil {
		return err
	}
	// One join at a time: a writer is checked against those added
	// before it, and is one of them before the next is checked.
	c.joinMu.Lock()
	defer c.joinMu.Unlock()
	c.mu.Lock()
	c.writers = c.prune()
	if slices.ContainsFunc(c.writers, func(d *fanout.Dest) bool { return d.Writer() == w }) {
		c.mu.Unlock()
		return errCopierWriterTwice
	}
	d := fanout.NewDest(c.added, w)
	c.added++
	c.mu.Unlock()
	if err := c.fan.join(d, w); err != nil {
		if errors.Is(err, fanout.ErrEnded) {
			return ErrCopierStopped
		}
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped {
		c.writers = append(c.prune(), d)
	}
	return nil
}

// usable fails for the file of a Copier's reader or writer that has no
// descriptor: none at all, or one closed already (an error matching
// os.ErrClosed, as the file's own Read or Write returns). op names the
// file's use in the error: "read" or "write".
func usable(f *os.File, op string) error {
	if _, err := f.SyscallConn(); err != nil {
		return err // a nil file: os.ErrInvalid
	}
	if fileClosed(f) {
		return &os.PathError{Op: op, Path: f.Name(), Err: os.ErrClosed}
	}
	return nil
}

// prune drops the writers that have left. c.mu is held.
func (c *Copier) prune() []*fanout.Dest {
	return slices.DeleteFunc(c.writers, func(d *fanout.Dest) bool { return !d.Running() })
}

// Writers returns how many writers the copier is copying to (added and not
// evicted); 0 once it has stopped.
func (c *Copier) Writers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writers = c.prune()
	return len(c.writers)
}

// Wait blocks until the copier stops and returns nil if the source reached
// EOF, or else the error that stopped it: one wrapping ctx.Err(), or the
// source's read error (one matching os.ErrClosed if the reader was
// closed).
func (c *Copier) Wait() error {
	<-c.done
	return c.err
}

func (c *Copier) run() {
	stop := interruptOnDone(c.ctx, nil, c.src)
	err := c.fan.run(c.src)
	stop()
	switch {
	case err == nil:
	case c.ctx.Err() != nil:
		err = ctxerr.Wrap("pipes: copier", c.ctx, err)
	default:
		err = closedFileErr(err, nil, c.src)
	}
	c.mu.Lock()
	c.stopped, c.err, c.writers = true, err, nil
	c.mu.Unlock()
	close(c.done)
}

// userspaceCopierFan runs a Copier on the userspace fan-out
// (fanout.NewUserspace): each queue holds one chunk, so the slowest
// writer sets the pace.
type userspaceCopierFan struct{ u *fanout.Userspace }

func newUserspaceCopierFan(ctx context.Context, r *PipeReader) userspaceCopierFan {
	return userspaceCopierFan{fanout.NewUserspace(ctx, r.idleWatch())}
}

func (f userspaceCopierFan) join(d *fanout.Dest, _ *PipeWriter) error { return f.u.Join(d) }

func (f userspaceCopierFan) run(src *PipeReader) error { return f.u.Run(src) }

func (f userspaceCopierFan) abort() { f.u.Abort() }
