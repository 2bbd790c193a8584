package pipes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pipes-go/pipes/internal/ctxerr"
	"github.com/pipes-go/pipes/internal/fd"
)

// ErrEvicted is wrapped by the error of a destination that FanOut dropped
// because it kept the others waiting longer than the FanOutEvictAfter
// deadline. Such an error also wraps os.ErrDeadlineExceeded.
var ErrEvicted = errors.New("pipes: destination evicted")

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
	e.stats.bytes.Add(uint64(total))
	e.end()
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
	read, why := e.fanOutKernel(ctx, inner, limit, ds, cfg)
	if why == inKernel {
		if limited {
			lr.N -= read
		}
		return
	}
	e.stats.userspace[why].Add(1)
	fanOutUserspace(ctx, src, ds, cfg)
}

// fanDest is one destination of a fan-out. The coordinator (the goroutine
// running FanOut, or a Copier's) owns the fields not marked otherwise,
// from the destination's admission on; the destination's own goroutine
// writes written, and err before closing done.
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
// deadline in the past (fd.Deadlines). It is called at most once, by the
// coordinator.
func (d *fanDest) stop(reason error) {
	if d.quitting() {
		return
	}
	d.reason = reason
	close(d.quit)
	if dl := fd.Of(d.w, nil); !dl.None() {
		dl.Wake()
		d.woke = true
	}
}

// resetDeadline clears the deadline stop set, once the destination's
// goroutine has returned.
func (d *fanDest) resetDeadline() {
	if d.woke {
		fd.Of(d.w, nil).Reset()
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
	return ctxerr.Wrap("pipes: fan-out", ctx, nil)
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
// nothing for cfg.evictAfter is evicted. If ctx ends, all are stopped and
// awaitAll returns false.
func awaitAll(ctx context.Context, ds []*fanDest, progress chan struct{}, cfg *fanOutConfig) bool {
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
			return false
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
	return true
}

// errFanOutEnded is the error of a destination added to a fan-out that
// ended before admitting it.
var errFanOutEnded = errors.New("pipes: fan-out ended")

// fanJoins lets destinations join a running fan-out (Copier.Add). The
// coordinator admits the destinations added since it last looked right
// before it distributes each chunk: a destination receives every chunk
// distributed after it was added (a read already waiting for input when
// it was added included), and none distributed before. A fan-out with
// joins keeps running while it has no destination, reading nothing, until
// its context ends.
type fanJoins[D fanMember] struct {
	mu      sync.Mutex
	pending []D
	closed  bool
	wake    chan struct{} // cap 1: a destination was added
}

func newFanJoins[D fanMember]() *fanJoins[D] {
	return &fanJoins[D]{wake: make(chan struct{}, 1)}
}

// add queues d for admission. It reports false, queuing nothing, once
// the fan-out has ended.
func (j *fanJoins[D]) add(d D) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return false
	}
	j.pending = append(j.pending, d)
	kick(j.wake)
	return true
}

// take returns the destinations added since the last take. A nil
// fanJoins (a fan-out with a fixed set of destinations) has none.
func (j *fanJoins[D]) take() []D {
	if j == nil {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	p := j.pending
	j.pending = nil
	return p
}

// await waits, while the fan-out has no destination, until one is added.
// It returns false if none can come: j is nil, or ctx ended.
func (j *fanJoins[D]) await(ctx context.Context) bool {
	if j == nil {
		return false
	}
	select {
	case <-j.wake:
		return true
	case <-ctx.Done():
		return false
	}
}

// close ends admissions: later adds fail. It returns the destinations
// added and never admitted, which the caller abandons.
func (j *fanJoins[D]) close() []D {
	if j == nil {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.closed = true
	p := j.pending
	j.pending = nil
	return p
}

// fanMember is a destination as one fan-out path holds it: a *fanDest
// and the path's own state (its queue, or its private pipe).
type fanMember interface{ base() *fanDest }

func (d *fanDest) base() *fanDest { return d }

// bases returns the *fanDest of every member of ds.
func bases[D fanMember](ds []D) []*fanDest {
	out := make([]*fanDest, len(ds))
	for i, d := range ds {
		out[i] = d.base()
	}
	return out
}

// live counts the members of ds still in the copy.
func live[D fanMember](ds []D) int {
	n := 0
	for _, d := range ds {
		if b := d.base(); !b.exited() && !b.quitting() {
			n++
		}
	}
	return n
}

// pruneExited drops the members of ds whose goroutine has returned,
// clearing the deadline stop set on them and calling release for each, so
// that a long-lived fan-out does not accumulate destinations that left.
func pruneExited[D fanMember](ds []D, release func(D)) []D {
	return slices.DeleteFunc(ds, func(d D) bool {
		b := d.base()
		if !b.exited() {
			return false
		}
		b.resetDeadline()
		if release != nil {
			release(d)
		}
		return true
	})
}

// abandon ends a destination that was added to a fan-out but never
// admitted: it received nothing, and its error is errFanOutEnded.
func (d *fanDest) abandon() {
	d.err = errFanOutEnded
	close(d.done)
}

// ufan is a fan-out through userspace buffers: the coordinator reads a
// chunk of src and queues it to every destination's goroutine, which
// writes it. A destination's queue holds depth chunks; chunks are shared,
// read-only, by all the queues.
type ufan struct {
	ctx      context.Context
	cfg      *fanOutConfig
	depth    int
	ds       []*udest          // admitted; the coordinator's
	joins    *fanJoins[*udest] // nil: no destination joins after the start
	progress chan struct{}     // cap 1: a destination wrote or returned
	srcErr   error             // read by the destinations after their queue closes
}

// udest is a destination of a userspace fan-out.
type udest struct {
	*fanDest
	q chan []byte
}

func newUfan(ctx context.Context, cfg *fanOutConfig, depth int) *ufan {
	return &ufan{ctx: ctx, cfg: cfg, depth: depth, progress: make(chan struct{}, 1)}
}

// fanOutUserspace is the fan-out of src to the fixed destinations ds
// through userspace buffers; each queue holds cfg.bufferFor bytes.
func fanOutUserspace(ctx context.Context, src io.Reader, ds []*fanDest, cfg *fanOutConfig) {
	u := newUfan(ctx, cfg, max(1, cfg.bufferFor(len(ds))/fanOutChunk))
	for _, d := range ds {
		u.start(&udest{fanDest: d})
	}
	u.run(src)
}

// join queues d for admission into a fan-out made with joins; it fails
// with errFanOutEnded once the fan-out has ended.
func (u *ufan) join(d *fanDest) error {
	if !u.joins.add(&udest{fanDest: d}) {
		return errFanOutEnded
	}
	return nil
}

// start admits d: it gets a queue and a goroutine that writes what is
// queued to it.
func (u *ufan) start(d *udest) {
	d.q = make(chan []byte, u.depth)
	u.ds = append(u.ds, d)
	go u.deliver(d)
}

// admit drops the destinations that left and starts those that joined.
func (u *ufan) admit() {
	u.ds = pruneExited(u.ds, nil)
	for _, d := range u.joins.take() {
		u.start(d)
	}
}

// run is the coordinator. It returns when every destination is done, with
// the fan-out's outcome: nil when src reached EOF (or no destination was
// left), the read error of src, or fanOutCtxError when ctx ended first.
func (u *ufan) run(src io.Reader) error {
	stopRead := interruptOnDone(u.ctx, nil, src)
	for u.ctx.Err() == nil {
		u.admit()
		if live(u.ds) == 0 {
			if !u.joins.await(u.ctx) {
				break
			}
			continue
		}
		b := make([]byte, fanOutChunk)
		n, err := src.Read(b)
		if n > 0 {
			u.admit() // those added while the read waited get this chunk
			distributeChunk(u.ctx, b[:n], u.ds, u.cfg)
		}
		if err != nil {
			if err != io.EOF {
				u.srcErr = fmt.Errorf("pipes: fan-out: reading the source: %w", err)
			}
			break
		}
	}
	stopRead()
	for _, d := range u.joins.close() {
		d.abandon()
	}
	ds := bases(u.ds)
	if u.ctx.Err() != nil {
		stopAll(ds, fanOutCtxError(u.ctx))
		return fanOutCtxError(u.ctx)
	}
	for _, d := range u.ds {
		close(d.q)
	}
	if !awaitAll(u.ctx, ds, u.progress, u.cfg) {
		return fanOutCtxError(u.ctx)
	}
	return u.srcErr
}

// deliver is a destination's goroutine: it writes what is queued to it
// until its queue closes, a write fails, or it is stopped.
func (u *ufan) deliver(d *udest) {
	defer func() {
		close(d.done) // before the kick: the coordinator checks done when woken
		kick(u.progress)
	}()
	for {
		select {
		case b, ok := <-d.q:
			if !ok {
				d.err = u.srcErr
				return
			}
			n, err := d.w.Write(b)
			d.written.Add(int64(n))
			kick(u.progress)
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
}

// distributeChunk queues b to every destination still running, applying
// the policy to those whose queue is full.
func distributeChunk(ctx context.Context, b []byte, ds []*udest, cfg *fanOutConfig) {
	var deadline <-chan time.Time
	if cfg.evictAfter > 0 {
		t := time.NewTimer(cfg.evictAfter)
		defer t.Stop()
		deadline = t.C
	}
	for _, d := range ds {
		if d.exited() || d.quitting() {
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
		case <-ctx.Done():
			return
		case <-deadline:
			d.stop(evictedError(d.idx, cfg.evictAfter))
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
