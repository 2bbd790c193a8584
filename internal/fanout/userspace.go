package fanout

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Userspace is a fan-out through userspace buffers: the coordinator reads
// a Chunk of the source and queues it to every destination's goroutine,
// which writes it. A destination's queue holds depth chunks; chunks are
// shared, read-only, by all the queues.
type Userspace struct {
	ctx      context.Context
	p        Policy
	depth    int
	ds       []*udest       // admitted; the coordinator's
	joins    *joins[*udest] // nil: no destination joins after the start
	progress chan struct{}  // cap 1: a destination wrote or returned
	leaving  leaving        // the destinations' goroutines not returned yet
	srcErr   error          // read by the destinations after their queue closes
}

// udest is a destination of a userspace fan-out.
type udest struct {
	*Dest
	q chan []byte
}

func newUserspace(ctx context.Context, p Policy) *Userspace {
	depth := max(1, p.Buffer/Chunk)
	u := &Userspace{ctx: ctx, p: p, depth: depth, progress: make(chan struct{}, 1)}
	u.leaving.noneLeft = p.OnNoneLeft
	return u
}

// RunUserspace fans src out to the destinations ds through userspace
// buffers, each queue holding p.Buffer bytes, and returns when every
// destination is done (see Run).
func RunUserspace(ctx context.Context, src io.Reader, ds []*Dest, p Policy) error {
	u := newUserspace(ctx, p)
	u.leaving.expect(len(ds))
	for _, d := range ds {
		u.start(&udest{Dest: d})
	}
	return u.Run(src)
}

// NewUserspace returns a fan-out that destinations join while it runs
// (Join), each queue holding one chunk, so that the slowest destination
// sets the pace. It has no destination until one joins; while it has
// none, w watches the source.
func NewUserspace(ctx context.Context, w Watch) *Userspace {
	u := newUserspace(ctx, Policy{})
	u.joins = newJoins[*udest](w)
	return u
}

// Join queues d for admission into a fan-out made by NewUserspace, between
// two chunks. It fails with ErrEnded once the fan-out has ended. It may
// run concurrently with the coordinator.
func (u *Userspace) Join(d *Dest) error {
	if !u.joins.add(&udest{Dest: d}) {
		return ErrEnded
	}
	return nil
}

// Abort ends a fan-out made by NewUserspace that will never run: the
// destinations that joined are abandoned.
func (u *Userspace) Abort() {
	for _, d := range u.joins.close() {
		d.abandon()
	}
}

// start admits d: it gets a queue and a goroutine that writes what is
// queued to it. The caller has counted it in leaving (expect).
func (u *Userspace) start(d *udest) {
	d.q = make(chan []byte, u.depth)
	u.ds = append(u.ds, d)
	go u.deliver(d)
}

// admit drops the destinations that left and starts those that joined.
func (u *Userspace) admit() {
	u.ds = pruneExited(u.ds, nil)
	for _, d := range u.joins.take() {
		u.leaving.expect(1)
		u.start(d)
	}
}

// Run is the coordinator. It returns when every destination is done, with
// the fan-out's outcome: nil when src reached EOF (or no destination was
// left, unless Policy.OnNoneLeft ended ctx for that first), the read
// error of src, or an error wrapping ctx.Err() when ctx ended first. The
// caller interrupts a read of src blocked when ctx ends.
//
// A panic of src's Read or of a destination's Write stops every
// destination and is raised again in Run's goroutine (settle).
func (u *Userspace) Run(src io.Reader) (err error) {
	returned := false
	defer func() { settle(&u.ds, u.Abort, recover(), returned) }()
	err = u.run(src)
	returned = true
	return err
}

// run is Run's work, under settle.
func (u *Userspace) run(src io.Reader) error {
	for u.ctx.Err() == nil {
		u.admit()
		if live(u.ds) == 0 {
			more, err := u.joins.await(u.ctx)
			if !more {
				if err != nil && u.ctx.Err() == nil {
					u.srcErr = fmt.Errorf("pipes: fan-out: reading the source: %w", err)
				}
				break
			}
			continue
		}
		if !u.leaving.beginRead() {
			break // the last destination left while none was read
		}
		b := make([]byte, Chunk)
		n, err := src.Read(b)
		u.leaving.endRead()
		if n > 0 {
			u.admit() // those added while the read waited get this chunk
			u.distribute(b[:n])
		}
		if err != nil {
			if err != io.EOF {
				u.srcErr = fmt.Errorf("pipes: fan-out: reading the source: %w", err)
			}
			break
		}
	}
	u.Abort()
	ds := bases(u.ds)
	if u.ctx.Err() != nil {
		stopAll(ds, ctxError(u.ctx))
		return ctxError(u.ctx)
	}
	for _, d := range u.ds {
		close(d.q)
	}
	if !awaitAll(u.ctx, ds, u.progress, u.p) {
		return ctxError(u.ctx)
	}
	return u.srcErr
}

// deliver is a destination's goroutine: it writes what is queued to it
// until its queue closes, a write fails, or it is stopped.
func (u *Userspace) deliver(d *udest) {
	d.begin()
	defer u.leaving.leave()
	defer d.exit(u.progress)
	d.run(u.p.OnPanic, func() { u.deliverLoop(d) })
}

// deliverLoop is deliver's work, run by Dest.run.
func (u *Userspace) deliverLoop(d *udest) {
	for {
		select {
		case b, ok := <-d.q:
			if !ok {
				d.err = u.srcErr
				return
			}
			if d.stopped() {
				// Stopped while a chunk was queued: select took the
				// chunk, not the stop, at random.
				d.err = d.reason()
				return
			}
			n, err := d.w.Write(b)
			n, err = wrote(n, len(b), err)
			d.written.Add(int64(n))
			kick(u.progress)
			if err != nil {
				d.err = d.failed(err)
				return
			}
		case <-d.life.Done():
			d.err = d.reason()
			return
		}
	}
}

// distribute queues b to every destination still running, applying the
// policy to those whose queue is full.
func (u *Userspace) distribute(b []byte) {
	var deadline <-chan time.Time
	if u.p.EvictAfter > 0 {
		t := time.NewTimer(u.p.EvictAfter)
		defer t.Stop()
		deadline = t.C
	}
	for _, d := range u.ds {
		if d.state() != running {
			continue
		}
		select {
		case d.q <- b:
			continue
		default:
		}
		select {
		case d.q <- b:
		case <-d.done:
		case <-u.ctx.Done():
			return
		case <-deadline:
			d.stop(d.evicted(u.p.EvictAfter))
			// Later destinations get no more time: only an immediate send.
			deadline = closedTimeChan
		}
	}
}

// closedTimeChan is a channel that is always ready.
var closedTimeChan = func() <-chan time.Time {
	c := make(chan time.Time)
	close(c)
	return c
}()
