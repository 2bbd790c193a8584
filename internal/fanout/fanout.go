// Package fanout is the fan-out mechanism of package pipes: a coordinator
// that reads a source once and hands each chunk to every destination,
// each destination with a goroutine of its own, and its two
// implementations: Userspace, through userspace buffers, and Kernel (on
// Linux), through tee(2) into a private pipe per destination and splice(2)
// out of it.
//
// It holds no policy: which implementation runs, which descriptors the
// kernel may splice, the buffer sizes and the statistics are package
// pipes' decisions. The root hands it the destinations as Dests, the
// descriptors as syscall.RawConns with their kind (internal/fd), and the
// Policy. It interrupts the writes of a destination it stops through
// internal/fd (an fd.Interrupt armed on the destination's life); the
// source's reads are the caller's to interrupt. It stands on internal/fd,
// internal/ctxerr and package splice, and never imports pipes.
package fanout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/pipes-go/pipes/internal/ctxerr"
	"github.com/pipes-go/pipes/internal/fd"
)

// ErrEvicted is wrapped by the error of a destination dropped because it
// kept the others waiting longer than Policy.EvictAfter. Such an error
// also wraps os.ErrDeadlineExceeded.
var ErrEvicted = errors.New("pipes: destination evicted")

// ErrEnded is the error of a destination added to a fan-out that ended
// before admitting it.
var ErrEnded = errors.New("pipes: fan-out ended")

// Chunk is the size of a userspace read: of the source by Userspace, of
// a private pipe by Kernel for a destination it cannot splice into. It is
// io.Copy's buffer size, so that each destination gets the Writes
// io.Copy gives it from a source without WriteTo: a destination may
// take a Write whole or not at all by its length (an O_DIRECT file takes
// only aligned ones), or keep its bounds (a datagram or seqpacket
// socket's messages), and it must get the bytes, messages and error
// io.Copy gives it. A source's Read gets the buffer io.Copy's would.
const Chunk = 32 << 10

// Policy is what a fan-out does with destinations that fall behind.
type Policy struct {
	// EvictAfter > 0 evicts a destination that has had no room for the
	// next chunk for that long while the others wait, or, after the
	// source ended, that accepts nothing for that long. 0: wait for it.
	EvictAfter time.Duration
	// Buffer is how many bytes a destination may fall behind the
	// fastest: the size of its private pipe (Kernel), or of its queue of
	// Chunks (Userspace, at least one).
	Buffer int
	// BufferDefault reports that Buffer is the default, not the
	// caller's: a Kernel fan-out that sends (Source.Send) then lets its
	// destinations fall up to sendWindow apart instead.
	BufferDefault bool
	// OnPanic, if not nil, is called by a destination's goroutine whose
	// Write panicked, before it returns: the caller ends the fan-out's
	// context with it, so that a read of the source waiting for input
	// then is interrupted (the caller's to interrupt) and the
	// coordinator raises the panic at once (settle). Without it, the
	// fan-out goes on with the other destinations and raises the panic
	// when it ends.
	OnPanic func()
	// OnNoneLeft, if not nil, is called in a fan-out without joins by
	// the goroutine of the last destination to return, once it has, if
	// the coordinator is reading the source then: the caller ends the
	// fan-out's context with it, so that the read, which may be waiting
	// for input, is interrupted (the caller's to interrupt) and the
	// fan-out returns, reading no further. Where the coordinator is not
	// reading, it is not called: the coordinator reads no more and
	// returns, and the caller's deadlines on the source are left as
	// they were. Without it, a fan-out whose destinations have all
	// failed returns only once the source has more input (read for none
	// of them) or ends.
	OnNoneLeft func()
}

// state is where a destination is in its life.
type state uint8

const (
	running  state = iota // in the copy
	stopping              // stopped (Dest.stop); its goroutine has not returned yet
	exited                // its goroutine has returned, or it was never admitted
)

// Dest is one destination of a fan-out. The coordinator (the goroutine
// running the fan-out) owns it from its admission on; the destination's
// own goroutine writes written, and err before closing done.
type Dest struct {
	idx     int
	w       io.Writer
	written atomic.Int64  // bytes that reached w
	err     error         // set by the destination's goroutine before done closes
	panic   any           // what its Write panicked with; set before done closes
	done    chan struct{} // closed when the destination's goroutine returns
	// life ends when the destination is stopped; its cause is why.
	life context.Context
	stop context.CancelCauseFunc
	// wake interrupts a write blocked on w when life ends, by a write
	// deadline in the past, and clears it once the goroutine is done.
	wake fd.Interrupt
}

// NewDest returns destination number idx (its index in error messages),
// writing to w.
func NewDest(idx int, w io.Writer) *Dest {
	life, stop := context.WithCancelCause(context.Background())
	return &Dest{
		idx: idx, w: w, done: make(chan struct{}),
		life: life, stop: stop, wake: fd.Interrupt{D: fd.Of(w, nil)},
	}
}

// Index returns the destination's number, as NewDest was given it.
func (d *Dest) Index() int { return d.idx }

// Writer returns the destination's writer.
func (d *Dest) Writer() io.Writer { return d.w }

// Written returns the bytes that reached the destination so far.
func (d *Dest) Written() int64 { return d.written.Load() }

// Err returns the destination's outcome once the fan-out has returned:
// nil if it received everything up to the end of the source.
func (d *Dest) Err() error { return d.err }

// Running reports whether the destination is still in the copy: neither
// stopped nor returned. It may be called from any goroutine.
func (d *Dest) Running() bool { return d.state() == running }

func (d *Dest) state() state {
	select {
	case <-d.done:
		return exited
	default:
	}
	if d.life.Err() != nil {
		return stopping
	}
	return running
}

// stopped reports whether stop was called: for the destination's own
// goroutine, which has not returned.
func (d *Dest) stopped() bool { return d.life.Err() != nil }

// reason returns why the destination was stopped.
func (d *Dest) reason() error { return context.Cause(d.life) }

// begin is the first thing the destination's goroutine does: from now on
// a stop interrupts its writes (fd.Interrupt on its life).
func (d *Dest) begin() { d.wake.Arm(d.life) }

// exit is the last thing the destination's goroutine does, after run
// has cleared the deadline a stop set: it closes done, then wakes the
// coordinator, which checks done when woken.
func (d *Dest) exit(progress chan struct{}) {
	close(d.done)
	kick(progress)
}

// run runs body, the work of the destination's goroutine, then clears
// the deadline a stop set (d.wake), and catches what ends it other than
// a return. A panic of its Write, or of its SetWriteDeadline (the
// destination's code too: when a stop called it, the panic is raised
// here, see fd.Waker), ends the destination, onPanic (Policy.OnPanic) is
// called, and the coordinator stops the fan-out and panics with the same
// value in the caller's goroutine (settle), as a Write in the caller's
// own goroutine would have. A Write that called runtime.Goexit fails the
// destination (ErrGoexit): its bytes went no further.
func (d *Dest) run(onPanic func(), body func()) {
	returned := false
	defer func() {
		switch p := recover(); {
		case p != nil:
			d.panic = p
			d.err = fmt.Errorf("pipes: fan-out to destination %d: panicked: %v", d.idx, p)
			if onPanic != nil {
				onPanic()
			}
		case !returned:
			d.err = fmt.Errorf("pipes: fan-out to destination %d: %w", d.idx, ErrGoexit)
		}
	}()
	defer d.wake.Stop()
	body()
	returned = true
}

// panicked returns what the destination's Write panicked with, or nil.
// Only a destination that has exited is looked at: its goroutine set
// panic before closing done.
func (d *Dest) panicked() any {
	if d.state() != exited {
		return nil
	}
	return d.panic
}

// abandon ends a destination that was added to a fan-out but never
// admitted: it received nothing, and its error is ErrEnded.
func (d *Dest) abandon() {
	d.err = ErrEnded
	close(d.done)
}

// failed returns the error of a write that failed: the stop reason if the
// destination was stopped (the failure is then the deadline the stop
// set), else err wrapped with the destination's index.
func (d *Dest) failed(err error) error {
	if d.stopped() {
		return d.reason()
	}
	return fmt.Errorf("pipes: fan-out to destination %d: %w", d.idx, err)
}

func (d *Dest) evicted(after time.Duration) error {
	return fmt.Errorf("pipes: fan-out to destination %d: %w: no room for %v (%w)", d.idx, ErrEvicted, after, os.ErrDeadlineExceeded)
}

// ctxError returns the error of destinations stopped by ctx.
func ctxError(ctx context.Context) error {
	return ctxerr.Wrap("pipes: fan-out", ctx, nil)
}

// errInvalidWrite is the error of a Write that returned a count out of
// range, io.Copy's own ("invalid write result").
var errInvalidWrite = errors.New("invalid write result")

// wrote checks what a destination's Write of m bytes returned, as
// io.Copy checks it: a count below 0 or above m counts as none, with
// errInvalidWrite; a short count without an error is io.ErrShortWrite.
func wrote(n, m int, err error) (int, error) {
	switch {
	case n < 0 || n > m:
		if err == nil {
			err = errInvalidWrite
		}
		return 0, err
	case n < m && err == nil:
		return n, io.ErrShortWrite
	}
	return n, err
}

// kick wakes the receiver of a capacity-1 channel without blocking.
func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
