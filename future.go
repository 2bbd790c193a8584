package pipes

import "sync/atomic"

// Future is the result of a copy started by CopyAsync.
type Future struct {
	done    chan struct{}
	meter   meter // bytes delivered so far
	written int64
	err     error
	panic   any // what the copy's Read or Write panicked with (copyAsync's catch)
}

func newFuture() *Future {
	return &Future{done: make(chan struct{})}
}

// resolve records the result and wakes every waiter. It is called once.
func (f *Future) resolve(written int64, err error) {
	f.written, f.err = written, err
	close(f.done)
}

// Wait blocks until the copy has finished and returns the number of bytes
// written to the destination and the first error met (nil at EOF). It may
// be called any number of times, from any goroutine.
func (f *Future) Wait() (written int64, err error) {
	<-f.done
	return f.written, f.err
}

// Done returns a channel that is closed when the copy has finished, for
// use in select statements; Wait then returns at once.
func (f *Future) Done() <-chan struct{} {
	return f.done
}

// Written returns the number of bytes delivered to the destination so
// far. It grows while the copy runs (on the kernel paths with every
// system call that moved bytes, on the userspace path as io.Copy writes
// where counting costs no fast path, else when the copy ends) and equals
// what Wait returns once Done is closed. It never wraps the source or
// destination, so counting costs no zero-copy path.
func (f *Future) Written() int64 {
	select {
	case <-f.done:
		return f.written
	default:
		return f.meter.n.Load()
	}
}

// meter counts the bytes one copy delivers as they move, for its
// Future and for the engine's Stats.Bytes. It is a splice.Meter.
type meter struct {
	n      atomic.Int64
	engine *atomic.Uint64 // the copy's stripe of Stats.Bytes; nil: not counted in an engine
	also   *atomic.Int64  // nil, or the caller's counter (RelayProgress)
	// live: a userspace copy counts every Write as it returns, also
	// where a ReaderFrom or WriterTo would take the copy whole and be
	// counted only when it ends (a relay, whose idle timer and
	// RelayProgress read the count while it runs).
	live bool
	// lent: the copy handed the meter to a wrapper of the caller's
	// values (meteredWriter), so it is not recycled (Engine.putMeter).
	lent bool
}

// Add records delta more bytes delivered.
func (m *meter) Add(delta int64) int64 {
	if m.engine != nil {
		m.engine.Add(uint64(delta))
	}
	if m.also != nil {
		m.also.Add(delta)
	}
	return m.n.Add(delta)
}
