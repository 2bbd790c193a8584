package fd

import (
	"context"
	"sync"
	"time"
)

// aLongTimeAgo is a deadline in the past, as net/http uses to interrupt.
var aLongTimeAgo = time.Unix(1, 0)

type readDeadliner interface{ SetReadDeadline(time.Time) error }
type writeDeadliner interface{ SetWriteDeadline(time.Time) error }

// Deadlines interrupts the reads of one value and the writes of another
// (sockets, pipes, *os.File, *pipes.PipeReader, ...) blocked in Go's
// netpoller: Wake sets their deadlines in the past, Reset clears them.
// Reset leaves the values with no deadline, even if their owner had set
// one before. The zero Deadlines interrupts nothing.
type Deadlines struct {
	r readDeadliner  // nil: the source has no read deadline
	w writeDeadliner // nil: the destination has no write deadline
}

// Of returns the Deadlines of the reads of src and the writes of dst,
// those of the two that have a deadline setter. Either may be nil.
func Of(dst, src any) Deadlines {
	var d Deadlines
	d.r, _ = src.(readDeadliner)
	d.w, _ = dst.(writeDeadliner)
	return d
}

// None reports that d interrupts nothing.
func (d Deadlines) None() bool { return d.r == nil && d.w == nil }

// Wake sets the deadlines in the past: a wait on them returns
// os.ErrDeadlineExceeded.
func (d Deadlines) Wake() {
	if d.r != nil {
		d.r.SetReadDeadline(aLongTimeAgo)
	}
	if d.w != nil {
		d.w.SetWriteDeadline(aLongTimeAgo)
	}
}

// Reset clears the deadlines.
func (d Deadlines) Reset() {
	if d.r != nil {
		d.r.SetReadDeadline(time.Time{})
	}
	if d.w != nil {
		d.w.SetWriteDeadline(time.Time{})
	}
}

// Target is what a Waker wakes: Deadlines, or ends that say themselves
// how they are woken (splice.End's Wake and Reset).
type Target interface {
	Wake()
	Reset()
}

// Waker calls its Target's Wake, once, from another goroutine, when a
// context ends, and its Reset when the copy it guards returns if Wake
// ran. It is meant to be a field of a per-copy value, so that arming it
// allocates only what context.AfterFunc does, and the callback it
// hands it (a method value).
type Waker struct {
	t    Target
	stop func() bool    // context.AfterFunc's; nil: not armed
	woke sync.WaitGroup // done once t.Wake has returned
}

// Arm arranges for t.Wake to be called when ctx ends. It does nothing
// when ctx cannot end. Arm is called at most once per Waker.
func (w *Waker) Arm(ctx context.Context, t Target) {
	if ctx.Done() == nil {
		return
	}
	w.t = t
	w.woke.Add(1)
	w.stop = context.AfterFunc(ctx, w.fire)
}

func (w *Waker) fire() {
	defer w.woke.Done()
	w.t.Wake()
}

// Stop undoes Arm once the guarded waits are over: it cancels the wake
// or, if it ran, waits for it to return and calls the Target's Reset.
func (w *Waker) Stop() {
	if w.stop == nil || w.stop() {
		return
	}
	w.woke.Wait()
	w.t.Reset()
}

// Interrupt is a Waker of Deadlines: the root's interruption of a copy's
// waits when its context ends.
type Interrupt struct {
	D Deadlines
	w Waker
}

// Arm arranges for i.D.Wake to be called when ctx ends (see Waker.Arm).
func (i *Interrupt) Arm(ctx context.Context) {
	if !i.D.None() {
		i.w.Arm(ctx, &i.D)
	}
}

// Stop undoes Arm (see Waker.Stop).
func (i *Interrupt) Stop() { i.w.Stop() }

// OnDone makes the reads of src and the writes of dst blocked in the
// netpoller return when ctx is done, by setting a deadline in the past
// on those that have deadlines. The returned stop must be called when the
// waits are over: it clears the deadlines it set.
func OnDone(ctx context.Context, dst, src any) (stop func()) {
	d := Of(dst, src)
	if ctx.Done() == nil || d.None() {
		return func() {}
	}
	i := &Interrupt{D: d}
	i.Arm(ctx)
	return i.Stop
}

// A Group interrupts the waits of its members all at once, when it is
// closed: the engine's interruption of the copies that run for its own
// lifetime (Engine.Copy), which then need no context.AfterFunc each.
// Joining and leaving take the Group's one lock (shared by every member,
// as a context's is by its AfterFuncs); a member is woken at most once,
// and its deadlines are cleared when it leaves if it was. Close sets the
// members' deadlines under that lock: a deadline setter that blocks
// delays every Join and Leave until it returns.
// The zero Group is open and empty.
type Group struct {
	mu     sync.Mutex
	closed bool
	head   *Member // doubly linked through Member.prev/next
}

// A Member is one copy's Deadlines in a Group. It may join one Group
// once, and must leave it before it is reused.
type Member struct {
	D          Deadlines
	woke       bool // D.Wake ran (under the Group's lock)
	prev, next *Member
}

// Join adds m to g. If g is closed already, m's deadlines are set in
// the past at once.
func (g *Group) Join(m *Member) {
	if m.D.None() {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		m.D.Wake()
		m.woke = true
		return
	}
	m.next = g.head
	if g.head != nil {
		g.head.prev = m
	}
	g.head = m
}

// Leave removes m from g once its waits are over, and clears the
// deadlines that Close (or Join on a closed g) set.
func (g *Group) Leave(m *Member) {
	if m.D.None() {
		return
	}
	g.mu.Lock()
	if m.prev != nil {
		m.prev.next = m.next
	} else if g.head == m {
		g.head = m.next
	}
	if m.next != nil {
		m.next.prev = m.prev
	}
	m.prev, m.next = nil, nil
	woke := m.woke
	g.mu.Unlock()
	if woke {
		m.D.Reset()
	}
}

// Close wakes every member and makes later Joins wake at once.
func (g *Group) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	for m := g.head; m != nil; m = m.next {
		m.D.Wake()
		m.woke = true
	}
}
