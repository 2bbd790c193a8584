package pipes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"
)

// ErrEvicted is wrapped by the error of a destination that FanOut dropped
// because it kept the others waiting longer than the FanOutEvictAfter
// deadline. Such an error also wraps os.ErrDeadlineExceeded.
var ErrEvicted = errors.New("pipes: destination evicted")

// errNilSource and errNilDestination report nil arguments.
var (
	errNilSource      = errors.New("pipes: nil source")
	errNilDestination = errors.New("pipes: nil destination")
)

// Result is the outcome of one copy of a FanOut or a CopyBatch.
type Result struct {
	// Written is the number of bytes that reached the destination.
	Written int64
	// Err is nil if the destination received everything up to the end
	// of the source, and else the first error met, as io.Copy reports it.
	Err error
}

// FanOutOption configures one FanOut call.
type FanOutOption func(*fanOutConfig)

type fanOutConfig struct {
	evictAfter time.Duration // > 0: evict a destination that holds the others up this long
	buffer     int           // bytes buffered per destination; 0: fanOutBuffer(n)
}

// FanOutEvictAfter selects the eviction policy: a destination whose buffer
// has had no room for the next chunk for d, while the others wait for it,
// is dropped; after the source ended, one that accepts nothing for d is
// dropped too. Its Result.Err then wraps ErrEvicted and
// os.ErrDeadlineExceeded, and its Written counts what it received before.
// d <= 0 selects the default policy, wait: every destination receives
// every byte, at the pace of the slowest.
func FanOutEvictAfter(d time.Duration) FanOutOption {
	return func(c *fanOutConfig) { c.evictAfter = max(d, 0) }
}

// FanOutBuffer sets how many bytes each destination may fall behind the
// fastest one: the size of its private pipe (rounded up by the kernel to a
// power-of-two number of pages, capped by /proc/sys/fs/pipe-max-size and
// the per-user pipe quota), or of its queue of chunks off Linux. The
// default spends at most 32 MiB of pipe quota on one call: 1 MiB per
// destination up to 31 destinations, less beyond, and never less than
// 64 KiB. n <= 0 keeps the default.
func FanOutBuffer(n int) FanOutOption {
	return func(c *fanOutConfig) { c.buffer = max(n, 0) }
}

const (
	fanOutBudget    = 32 << 20
	fanOutMaxBuffer = 1 << 20
	fanOutMinBuffer = 64 << 10
	fanOutChunk     = 64 << 10 // userspace read size
)

// bufferFor returns the per-destination buffer for n destinations: a
// power of two between fanOutMinBuffer and fanOutMaxBuffer.
func (c *fanOutConfig) bufferFor(n int) int {
	if c.buffer > 0 {
		return c.buffer
	}
	b := fanOutMaxBuffer
	for b > fanOutMinBuffer && b*(n+1) > fanOutBudget {
		b /= 2
	}
	return b
}

// FanOut copies src to every writer in dsts, reading src once, with
// DefaultEngine; see (*Engine).FanOut.
func FanOut(ctx context.Context, src io.Reader, dsts []io.Writer, opts ...FanOutOption) []Result {
	return DefaultEngine().FanOut(ctx, src, dsts, opts...)
}

// FanOut copies everything src yields, until EOF or an error, to every
// writer in dsts, reading src once however many destinations there are.
// It returns when every destination is done, with one Result per
// destination, in the order of dsts; no goroutine it started outlives it.
//
// On Linux, when src is a regular file, pipe, fifo or stream socket, the
// bytes never enter the process: each chunk is spliced from src into a
// staging pipe, duplicated with tee(2) into a private pipe per
// destination, and spliced from there into the destination (a socket,
// pipe or file; a destination with no descriptor receives the chunk
// through read(2) and its Write). Every system call on a caller's
// descriptor runs inside its syscall.RawConn callbacks and waits for
// readiness on the Go netpoller; nothing spins. The io_uring backend is not
// used: IORING_OP_TEE and IORING_OP_SPLICE run on io-wq kernel threads,
// one hand-off per operation, which measured slower here than tee(2) and
// splice(2) on the netpoller (docs/design.md). Elsewhere, or when src has
// no descriptor, FanOut reads a chunk into a userspace buffer and writes
// it to every destination, with the same policies.
//
// A destination may fall behind the fastest one by its buffer
// (FanOutBuffer). When its buffer is full the policy decides: by default
// the others wait for it; with FanOutEvictAfter it is dropped after the
// deadline. A destination whose write fails (EPIPE or ECONNRESET once its
// peer is gone, or any other error) is dropped at once with that error,
// wrapped so that errors.Is(err, syscall.EPIPE) holds; the others go on.
// Once no destination is left, src is read no further.
//
// A regular-file src is read from its current offset, which is left after
// the bytes read, as io.Copy leaves it. An *io.LimitedReader src is
// honoured: at most N bytes are read and N is decreased by the bytes read.
// When src fails, every destination still in the copy receives the bytes
// read before and then reports the read error.
//
// Cancelling ctx (or closing the engine) stops the copy: every destination
// not yet done reports an error for which errors.Is(err, ctx.Err()) holds
// (and ErrClosed after Close), with Written counting what it received.
// Waits on descriptors are interrupted by setting a read or write deadline
// in the past on those that have SetReadDeadline/SetWriteDeadline (sockets,
// pipes, *PipeReader, *PipeWriter); FanOut clears the deadlines it set
// before it returns. A Write or Read that cannot be interrupted delays the
// return until it returns by itself.
//
// A nil src (or one holding a nil pointer) fails every destination; a nil
// destination fails with an error of its own and does not disturb the
// others; no destinations means nothing is read and an empty result.
// FanOut never closes src or dsts.
func (e *Engine) FanOut(ctx context.Context, src io.Reader, dsts []io.Writer, opts ...FanOutOption) []Result {
	res := make([]Result, len(dsts))
	if len(dsts) == 0 {
		return res
	}
	failAll := func(err error) []Result {
		for i := range res {
			res[i].Err = err
		}
		return res
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if isNil(src) {
		return failAll(fmt.Errorf("pipes: fan-out: %w", errNilSource))
	}
	if err := ctx.Err(); err != nil {
		return failAll(fmt.Errorf("pipes: fan-out not started: %w", err))
	}
	var cfg fanOutConfig
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if err := e.begin(); err != nil {
		return failAll(err)
	}
	ds := make([]*fanDest, 0, len(dsts))
	for i, w := range dsts {
		if isNil(w) {
			res[i].Err = fmt.Errorf("pipes: fan-out to destination %d: %w", i, errNilDestination)
			continue
		}
		ds = append(ds, newFanDest(i, w))
	}
	cctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(e.ctx, func() { cancel(ErrClosed) })
	if len(ds) > 0 {
		e.fanOut(cctx, src, ds, &cfg)
	}
	stop()
	var total int64
	for _, d := range ds {
		res[d.idx] = Result{Written: d.written.Load(), Err: e.closedErr(cctx, d.err)}
		total += res[d.idx].Written
	}
	cancel(nil)
	e.end(total)
	return res
}

// fanOut runs a fan-out on the fastest path: the kernel's where it
// applies, else userspace.
func (e *Engine) fanOut(ctx context.Context, src io.Reader, ds []*fanDest, cfg *fanOutConfig) {
	limit := int64(-1)
	inner := src
	lr, limited := src.(*io.LimitedReader)
	if limited {
		if lr.N <= 0 {
			return
		}
		limit, inner = lr.N, lr.R
	}
	if read, handled := e.fanOutKernel(ctx, inner, limit, ds, cfg); handled {
		if limited {
			lr.N -= read
		}
		return
	}
	e.stats.userspace.Add(1)
	fanOutUserspace(ctx, src, ds, cfg)
}

// fanDest is one destination of a fan-out. The coordinator (the goroutine
// running FanOut) owns the fields not marked otherwise; the destination's
// own goroutine writes written, and err before closing done.
type fanDest struct {
	idx     int
	w       io.Writer
	written atomic.Int64  // bytes that reached w (the destination's goroutine)
	err     error         // set by the destination's goroutine before done closes
	done    chan struct{} // closed when the destination's goroutine returns
	quit    chan struct{} // closed by stop
	reason  error         // why stop was called; set before quit closes
	woke    bool          // stop set a write deadline that must be cleared
}

func newFanDest(idx int, w io.Writer) *fanDest {
	return &fanDest{idx: idx, w: w, done: make(chan struct{}), quit: make(chan struct{})}
}

// stop makes the destination's goroutine return with reason: it closes
// quit and interrupts a write blocked on the netpoller by setting a write
// deadline in the past. It is called at most once, by the coordinator.
func (d *fanDest) stop(reason error) {
	if d.quitting() {
		return
	}
	d.reason = reason
	close(d.quit)
	if wd, ok := d.w.(writeDeadliner); ok {
		wd.SetWriteDeadline(aLongTimeAgo)
		d.woke = true
	}
}

// resetDeadline clears the deadline stop set, once the destination's
// goroutine has returned.
func (d *fanDest) resetDeadline() {
	if d.woke {
		d.w.(writeDeadliner).SetWriteDeadline(time.Time{})
		d.woke = false
	}
}

func (d *fanDest) quitting() bool {
	select {
	case <-d.quit:
		return true
	default:
		return false
	}
}

func (d *fanDest) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// failed returns the error of a write that failed: the stop reason if the
// destination was stopped (the failure is then the deadline stop set),
// else err wrapped with the destination's index.
func (d *fanDest) failed(err error) error {
	if d.quitting() {
		return d.reason
	}
	return fmt.Errorf("pipes: fan-out to destination %d: %w", d.idx, err)
}

func evictedError(idx int, after time.Duration) error {
	return fmt.Errorf("pipes: fan-out to destination %d: %w: no room for %v (%w)", idx, ErrEvicted, after, os.ErrDeadlineExceeded)
}

// fanOutCtxError returns the error of destinations stopped by ctx.
func fanOutCtxError(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if cause == nil || cause == err {
		return fmt.Errorf("pipes: fan-out: %w", err)
	}
	return fmt.Errorf("pipes: fan-out: %w: %w", err, cause)
}

// kick wakes the receiver of a capacity-1 channel without blocking.
func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// stopAll stops every destination that has not returned and waits for
// all of them, then clears the deadlines stop set.
func stopAll(ds []*fanDest, reason error) {
	for _, d := range ds {
		if !d.exited() {
			d.stop(reason)
		}
	}
	for _, d := range ds {
		<-d.done
		d.resetDeadline()
	}
}

// awaitAll waits for every destination's goroutine to return once the
// source has ended. With an eviction deadline, a destination that delivers
// nothing for cfg.evictAfter is evicted; if ctx ends, all are stopped.
func awaitAll(ctx context.Context, ds []*fanDest, progress chan struct{}, cfg *fanOutConfig) {
	var tick <-chan time.Time
	if cfg.evictAfter > 0 {
		t := time.NewTicker(cfg.evictAfter)
		defer t.Stop()
		tick = t.C
	}
	last := make([]int64, len(ds))
	for i, d := range ds {
		last[i] = d.written.Load()
	}
	for {
		pending := false
		for _, d := range ds {
			if !d.exited() {
				pending = true
				break
			}
		}
		if !pending {
			break
		}
		select {
		case <-progress:
		case <-ctx.Done():
			stopAll(ds, fanOutCtxError(ctx))
			return
		case <-tick:
			for i, d := range ds {
				n := d.written.Load()
				if n == last[i] && !d.exited() {
					d.stop(evictedError(d.idx, cfg.evictAfter))
				}
				last[i] = n
			}
		}
	}
	for _, d := range ds {
		<-d.done
		d.resetDeadline()
	}
}

// fanOutUserspace is the fan-out through userspace buffers: the
// coordinator reads a chunk of src and queues it to every destination's
// goroutine, which writes it. A destination's queue holds cfg.bufferFor
// bytes of chunks; chunks are shared, read-only, by all the queues.
func fanOutUserspace(ctx context.Context, src io.Reader, ds []*fanDest, cfg *fanOutConfig) {
	depth := max(1, cfg.bufferFor(len(ds))/fanOutChunk)
	progress := make(chan struct{}, 1)
	queues := make([]chan []byte, len(ds))
	var srcErr error // read by the destinations after their queue closes
	for i, d := range ds {
		q := make(chan []byte, depth)
		queues[i] = q
		go func() {
			defer func() {
				close(d.done) // before the kick: the coordinator checks done when woken
				kick(progress)
			}()
			for {
				select {
				case b, ok := <-q:
					if !ok {
						d.err = srcErr
						return
					}
					n, err := d.w.Write(b)
					d.written.Add(int64(n))
					kick(progress)
					if err == nil && n < len(b) {
						err = io.ErrShortWrite
					}
					if err != nil {
						d.err = d.failed(err)
						return
					}
				case <-d.quit:
					d.err = d.reason
					return
				}
			}
		}()
	}
	stopRead := interruptOnDone(ctx, nil, src)
	live := len(ds)
	for live > 0 {
		if ctx.Err() != nil {
			break
		}
		b := make([]byte, fanOutChunk)
		n, err := src.Read(b)
		if n > 0 {
			live = distributeChunk(ctx, b[:n], ds, queues, cfg)
		}
		if err != nil {
			if err != io.EOF {
				srcErr = fmt.Errorf("pipes: fan-out: reading the source: %w", err)
			}
			break
		}
	}
	stopRead()
	if ctx.Err() != nil {
		stopAll(ds, fanOutCtxError(ctx))
		return
	}
	for _, q := range queues {
		close(q)
	}
	awaitAll(ctx, ds, progress, cfg)
}

// distributeChunk queues b to every destination still running, applying
// the policy to those whose queue is full. It returns how many run.
func distributeChunk(ctx context.Context, b []byte, ds []*fanDest, queues []chan []byte, cfg *fanOutConfig) int {
	var deadline <-chan time.Time
	if cfg.evictAfter > 0 {
		t := time.NewTimer(cfg.evictAfter)
		defer t.Stop()
		deadline = t.C
	}
	live := 0
	for i, d := range ds {
		if d.exited() || d.quitting() {
			continue
		}
		select {
		case queues[i] <- b:
			live++
			continue
		default:
		}
		select {
		case queues[i] <- b:
			live++
		case <-d.done:
		case <-ctx.Done():
			return live
		case <-deadline:
			d.stop(evictedError(d.idx, cfg.evictAfter))
			// Later destinations get no more time: only an immediate send.
			deadline = closedTimeChan
		}
	}
	return live
}

// closedTimeChan is a channel that is always ready.
var closedTimeChan = func() <-chan time.Time {
	c := make(chan time.Time)
	close(c)
	return c
}()
