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
// os.ErrDeadlineExceeded. The deadline setters are the caller's code: if
// one panics, the other is still called, and the first panic goes on
// once both have returned.
func (d Deadlines) Wake() { d.set(aLongTimeAgo) }

// Reset clears the deadlines; a setter's panic goes on as in Wake.
func (d Deadlines) Reset() { d.set(time.Time{}) }

func (d Deadlines) set(t time.Time) {
	var p any
	if d.r != nil {
		p = setRead(d.r, t)
	}
	if d.w != nil {
		if q := setWrite(d.w, t); p == nil {
			p = q
		}
	}
	if p != nil {
		panic(p)
	}
}

// setRead calls r.SetReadDeadline(t) and returns what it panicked with,
// or nil.
func setRead(r readDeadliner, t time.Time) (p any) {
	defer func() { p = recover() }()
	r.SetReadDeadline(t)
	return nil
}

// setWrite calls w.SetWriteDeadline(t) and returns what it panicked
// with, or nil.
func setWrite(w writeDeadliner, t time.Time) (p any) {
	defer func() { p = recover() }()
	w.SetWriteDeadline(t)
	return nil
}

// wake calls t.Wake and returns what it panicked with, or nil.
func wake(t Target) (p any) {
	defer func() { p = recover() }()
	t.Wake()
	return nil
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
//
// Wake and Reset run the caller's deadline setters. A panic of Wake,
// which runs in a goroutine of its own where nothing could recover it,
// is recovered there and raised again by Stop, in the goroutine of the
// copy it guards, as a panic of the copy's own Read or Write would be.
type Waker struct {
	t     Target
	stop  func() bool    // context.AfterFunc's; nil: not armed
	woke  sync.WaitGroup // done once t.Wake has returned
	panic any            // what t.Wake panicked with; read after woke
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
	w.panic = wake(w.t)
}

// Stop undoes Arm once the guarded waits are over: it cancels the wake
// or, if it ran, waits for it to return and calls the Target's Reset.
// If Wake panicked, Stop panics with the same value once Reset has
// returned.
func (w *Waker) Stop() {
	if w.stop == nil || w.stop() {
		return
	}
	w.woke.Wait()
	p := w.panic
	w.t.Reset()
	if p != nil {
		panic(p)
	}
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
// lifetime (Engine.Copy), which then need no context.AfterFunc each, and
// of the contexts of copies and relays that it must end (a Target that
// cancels one). Joining and leaving take the Group's one lock (shared by
// every member, as a context's is by its AfterFuncs); a member is woken
// at most once, and its Target is Reset when it leaves if it was. Close
// wakes the members under that lock: a Wake that blocks delays every
// Join and Leave until it returns. A Wake that panics in Close does not
// keep Close from waking the other members: the panic is the member's,
// raised again by its Leave, in the goroutine of the copy whose value it
// is.
// The zero Group is open and empty.
type Group struct {
	mu     sync.Mutex
	closed bool
	head   *Member // doubly linked through Member.prev/next
}

// A Member is one copy's Target in a Group: its Deadlines, say. It may
// join one Group once, and must leave it before it is reused. A Member
// whose Target is nil, or Deadlines that interrupt nothing, never joins.
type Member struct {
	T          Target
	woke       bool // T.Wake ran (under the Group's lock)
	panic      any  // what T.Wake panicked with in Close (under the lock)
	prev, next *Member
}

// inert reports a member with nothing to wake.
func (m *Member) inert() bool {
	if d, ok := m.T.(*Deadlines); ok {
		return d.None()
	}
	return m.T == nil
}

// Join adds m to g. If g is closed already, m's Target is woken at once;
// a panic of that Wake is raised again by Leave, as one in Close is.
func (g *Group) Join(m *Member) {
	if m.inert() {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		// As in Close: a panic of Wake is the member's, raised again
		// by its Leave once its Target is reset, so that the caller's
		// stop, deferred once Join has returned, clears what it set.
		m.panic = wake(m.T)
		m.woke = true
		return
	}
	m.next = g.head
	if g.head != nil {
		g.head.prev = m
	}
	g.head = m
}

// Leave removes m from g once its waits are over, and resets its Target
// if Close (or Join on a closed g) woke it: Deadlines are cleared. If
// its Wake panicked in Close, Leave panics with the same value once the
// Target is reset.
func (g *Group) Leave(m *Member) {
	if m.inert() {
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
	woke, p := m.woke, m.panic
	g.mu.Unlock()
	if woke {
		m.T.Reset()
	}
	if p != nil {
		panic(p)
	}
}

// Close wakes every member and makes later Joins wake at once. It may
// be called more than once (a tie's Group is closed by each way the tie
// ends): each call wakes the members again, and a member keeps the
// first panic of its Wake.
func (g *Group) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	for m := g.head; m != nil; m = m.next {
		if p := wake(m.T); m.panic == nil {
			m.panic = p
		}
		m.woke = true
	}
}
