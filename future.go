package pipes

// Future is the result of a copy started by CopyAsync.
type Future struct {
	done    chan struct{}
	written int64
	err     error
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
