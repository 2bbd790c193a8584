package fanout

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// The coordinator's side of a fan-out, shared by both implementations:
// stopping and awaiting destinations, admitting those that join.

// stopAll stops every destination that has not returned, with reason, and
// waits for all of them.
func stopAll(ds []*Dest, reason error) {
	for _, d := range ds {
		if d.state() != exited {
			d.stop(reason)
		}
	}
	for _, d := range ds {
		<-d.done
	}
}

// awaitAll waits for every destination's goroutine to return once the
// source has ended. With an eviction deadline, a destination that
// delivers nothing for p.EvictAfter is evicted: its count is sampled
// four times per p.EvictAfter, at most once a millisecond (never per
// byte, nor per progress kick, which would cost a scan of every
// destination each), so that it is evicted between p.EvictAfter and
// 1.25 times that after its last progress or the start of the wait (for
// p.EvictAfter of 4 ms and more), as a relay's idle timeout ends it.
// If ctx ends, all are stopped and awaitAll returns false.
func awaitAll(ctx context.Context, ds []*Dest, progress chan struct{}, p Policy) bool {
	var tick <-chan time.Time
	if p.EvictAfter > 0 {
		t := time.NewTicker(max(p.EvictAfter/4, time.Millisecond))
		defer t.Stop()
		tick = t.C
	}
	now := time.Now()
	last := make([]int64, len(ds))      // written when last seen to change
	since := make([]time.Time, len(ds)) // the sample that saw that
	for i, d := range ds {
		last[i], since[i] = d.written.Load(), now
	}
	for slices.ContainsFunc(ds, func(d *Dest) bool { return d.state() != exited }) {
		select {
		case <-progress:
		case <-ctx.Done():
			stopAll(ds, ctxError(ctx))
			return false
		case <-tick:
			evictIdle(ds, last, since, time.Now(), p.EvictAfter)
		}
	}
	return true
}

// evictIdle evicts, at the sample taken at now, each running destination
// of ds whose count (last, as sampled at since) has not changed for d.
func evictIdle(ds []*Dest, last []int64, since []time.Time, now time.Time, d time.Duration) {
	for i, dst := range ds {
		if n := dst.written.Load(); n != last[i] {
			last[i], since[i] = n, now
			continue
		}
		if dst.state() == running && now.Sub(since[i]) >= d {
			dst.stop(dst.evicted(d))
		}
	}
}

// errPanicked is the reason the destinations of a fan-out are stopped
// with when its source's Read or a destination's Write panicked. No
// caller sees it: the fan-out then panics.
var errPanicked = errors.New("pipes: fan-out: a Read or Write panicked")

// ErrGoexit is the error of a destination whose Write called
// runtime.Goexit (t.FailNow in a test's Write, say), and the reason the
// other destinations are stopped with when the source's Read did.
var ErrGoexit = errors.New("pipes: a Read or Write called runtime.Goexit")

// settle is deferred by a coordinator, with what the coordinator's
// recover returned and whether it returned: if the coordinator panicked
// (the source's Read), or a destination's Write panicked, it stops every
// destination, waits for their goroutines and panics with that value in
// the caller's goroutine, as io.Copy's Read or Write would. If the
// source's Read called runtime.Goexit, it stops and waits for them the
// same way, and the Goexit goes on. Destinations that joined and were
// never admitted are abandoned first (abandon).
func settle[M member](ms *[]M, abandon func(), p any, returned bool) {
	if p == nil {
		for _, m := range *ms {
			if p = m.base().panicked(); p != nil {
				break
			}
		}
	}
	if p == nil && returned {
		return
	}
	abandon()
	if p == nil {
		stopAll(bases(*ms), ErrGoexit)
		return
	}
	stopAll(bases(*ms), errPanicked)
	panic(p)
}

// Watch is how a fan-out with joins watches its source while it has no
// destination, reading nothing: without one (the zero Watch) it waits
// for a destination or the end of its context only.
type Watch struct {
	// Wait waits, reading nothing, until the source has ended (eof: no
	// byte is left and none can come) or fails (err, a closed source
	// included), or until Interrupt is called or the caller's context
	// ends (the caller interrupts the source's waits then); what it
	// returns then does not matter.
	Wait func() (eof bool, err error)
	// Interrupt ends a Wait from another goroutine: a destination was
	// added. Reset undoes what it did to the source, after the Wait it
	// ended returned and before the source is read again.
	Interrupt, Reset func()
}

// joins lets destinations join a running fan-out. The coordinator admits
// the destinations added since it last looked right before it
// distributes each chunk: a destination receives every chunk distributed
// after it was added (a read already waiting for input when it was added
// included), and none distributed before. A fan-out with joins keeps
// running while it has no destination, reading nothing, until its context
// ends or, with a Watch, its source ends.
type joins[M member] struct {
	watch   Watch
	mu      sync.Mutex
	pending []M
	closed  bool
	wake    chan struct{} // cap 1: a destination was added
	waiting bool          // the coordinator is in watch.Wait
	woken   bool          // watch.Interrupt was called during that Wait
}

func newJoins[M member](w Watch) *joins[M] {
	return &joins[M]{watch: w, wake: make(chan struct{}, 1)}
}

// add queues m for admission, and interrupts the coordinator's Watch. It
// reports false, queuing nothing, once the fan-out has ended.
func (j *joins[M]) add(m M) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return false
	}
	j.pending = append(j.pending, m)
	kick(j.wake)
	if j.waiting && !j.woken {
		j.woken = true
		j.watch.Interrupt()
	}
	return true
}

// take returns the destinations added since the last take. A nil joins
// (a fan-out with a fixed set of destinations) has none.
func (j *joins[M]) take() []M { return j.drain(false) }

// await waits, while the fan-out has no destination, until one is added.
// It returns false if none can come: j is nil, ctx ended, or the Watch
// saw the source end; err is then the source's error (nil at EOF).
func (j *joins[M]) await(ctx context.Context) (more bool, err error) {
	if j == nil {
		return false, nil
	}
	if j.watch.Wait == nil {
		select {
		case <-j.wake:
			return true, nil
		case <-ctx.Done():
			return false, nil
		}
	}
	j.mu.Lock()
	if len(j.pending) > 0 || ctx.Err() != nil {
		j.mu.Unlock()
		return ctx.Err() == nil, nil
	}
	j.waiting = true
	j.mu.Unlock()
	eof, err := j.watch.Wait()
	j.mu.Lock()
	woken := j.woken
	j.waiting, j.woken = false, false
	j.mu.Unlock()
	if woken {
		j.watch.Reset()
	}
	// ctx is looked at after the Reset: the interruption of ctx, which
	// Reset may have undone, comes after ctx.Err() is set.
	switch {
	case ctx.Err() != nil:
		return false, nil
	case woken:
		return true, nil // what the source says is seen at the next read
	case eof || err != nil:
		return false, err
	}
	return true, nil
}

// close ends admissions: later adds fail. It returns the destinations
// added and never admitted, which the caller abandons.
func (j *joins[M]) close() []M { return j.drain(true) }

// drain returns the destinations pending and forgets them; with end, it
// ends admissions too.
func (j *joins[M]) drain(end bool) []M {
	if j == nil {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.closed = j.closed || end
	p := j.pending
	j.pending = nil
	return p
}

// member is a destination as one implementation holds it: a *Dest and
// the implementation's own state (its queue, or its private pipe).
type member interface{ base() *Dest }

func (d *Dest) base() *Dest { return d }

// bases returns the *Dest of every member of ms.
func bases[M member](ms []M) []*Dest {
	out := make([]*Dest, len(ms))
	for i, m := range ms {
		out[i] = m.base()
	}
	return out
}

// live counts the members of ms still in the copy.
func live[M member](ms []M) int {
	n := 0
	for _, m := range ms {
		if m.base().state() == running {
			n++
		}
	}
	return n
}

// leaving counts the destinations of a fan-out whose goroutines have
// not returned, and calls Policy.OnNoneLeft when the last one has while
// the coordinator reads the source (between beginRead and endRead): only
// a read waiting for input then needs waking, and waking the source
// clears the caller's deadline on it. Where the coordinator is not
// reading (it waits for a destination's room, or has met the source's
// end), it sees for itself that none is left (beginRead) and returns
// without touching the source.
type leaving struct {
	mu       sync.Mutex
	left     int32  // destinations whose goroutines have not returned
	reading  bool   // the coordinator is between beginRead and endRead
	noneLeft func() // Policy.OnNoneLeft; nil in a fan-out with joins
}

// expect counts n destinations whose goroutines are about to start. It
// is called before any of them starts, so that the count reaches 0 only
// once every one has returned.
func (l *leaving) expect(n int) {
	l.mu.Lock()
	l.left += int32(n)
	l.mu.Unlock()
}

// beginRead is called by the coordinator of a fan-out whose
// destinations have started before each read of the source. It reports
// false, and the source must not be read, when no destination is left
// in a fan-out without joins; else a destination that leaves as the
// last one wakes the read (OnNoneLeft) until endRead.
func (l *leaving) beginRead() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.noneLeft != nil && l.left == 0 {
		return false
	}
	l.reading = true
	return true
}

// endRead is called by the coordinator once a read of the source has
// returned.
func (l *leaving) endRead() {
	l.mu.Lock()
	l.reading = false
	l.mu.Unlock()
}

// leave is deferred by a destination's goroutine, first, so that it
// runs once the destination has exited.
func (l *leaving) leave() {
	l.mu.Lock()
	l.left--
	wake := l.left == 0 && l.reading && l.noneLeft != nil
	l.mu.Unlock()
	if wake {
		l.noneLeft()
	}
}

// pruneExited drops the members of ms whose goroutine has returned (but
// one whose Write panicked, kept for settle), calling release for each,
// so that a long-lived fan-out does not accumulate destinations that
// left.
func pruneExited[M member](ms []M, release func(M)) []M {
	return slices.DeleteFunc(ms, func(m M) bool {
		if m.base().state() != exited || m.base().panicked() != nil {
			return false
		}
		if release != nil {
			release(m)
		}
		return true
	})
}
