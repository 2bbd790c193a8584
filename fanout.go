package pipes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"time"

	"github.com/pipes-go/pipes/internal/ctxerr"
	"github.com/pipes-go/pipes/internal/fanout"
)

// ErrEvicted is wrapped by the error of a destination that FanOut dropped
// under FanOutEvictAfter: it kept the others waiting, or after the source
// ended it took nothing, for longer than the deadline. Such an error also
// wraps os.ErrDeadlineExceeded.
var ErrEvicted = fanout.ErrEvicted

// FanOutOption configures one FanOut call.
type FanOutOption func(*fanOutConfig)

type fanOutConfig struct {
	evictAfter time.Duration // > 0: evict a destination that holds the others up this long
	buffer     int           // bytes buffered per destination; 0: the default (policy)
}

// FanOutEvictAfter selects the eviction policy: a destination whose buffer
// has had no room for the next chunk for d, while the others wait for it,
// is dropped; after the source ended, one that accepts nothing for d is
// dropped too (its count is sampled four times per d, at most once a
// millisecond: it is dropped between d and 1.25d after its last byte,
// for d of 4 ms and more). Its Result.Err then wraps ErrEvicted and
// os.ErrDeadlineExceeded, and its Written counts what it received before.
// d <= 0 selects the default policy, wait: every destination receives
// every byte, at the pace of the slowest.
func FanOutEvictAfter(d time.Duration) FanOutOption {
	return func(c *fanOutConfig) { c.evictAfter = max(d, 0) }
}

// FanOutBuffer sets how many bytes each destination may fall behind the
// fastest one: the size of its private pipe (rounded up by the kernel to a
// power-of-two number of pages, capped by /proc/sys/fs/pipe-max-size and
// the per-user pipe quota), or of its queue of chunks where the fan-out
// goes through userspace (off Linux, or a source without a descriptor).
// The default spends at most 32 MiB of pipe quota on one call of up to
// 511 destinations: 1 MiB per destination up to 31 destinations, less
// beyond, and never less than 64 KiB (so more than 32 MiB from 512
// destinations on). n <= 0 keeps the default; n above 1 GiB counts as
// 1 GiB. With the default, a fan-out that sends a regular file into
// sockets with sendfile(2) (see Engine.FanOut) makes no private pipes
// and lets its destinations fall up to 16 MiB apart; a buffer set here
// keeps it teeing through pipes of this size.
func FanOutBuffer(n int) FanOutOption {
	return func(c *fanOutConfig) { c.buffer = min(max(n, 0), fanOutBufferCap) }
}

const (
	fanOutBudget    = 32 << 20
	fanOutMaxBuffer = 1 << 20
	fanOutMinBuffer = 64 << 10
	// fanOutBufferCap bounds FanOutBuffer: a userspace queue is made
	// with room for all its chunks at once, and F_SETPIPE_SZ takes the
	// size as a 32-bit unsigned int (the kernel makes no pipe above
	// 2 GiB), so that a larger request would be cut to its low bits.
	fanOutBufferCap = 1 << 30
)

// policy returns the fan-out policy for n destinations. The default
// buffer is a power of two between fanOutMinBuffer and fanOutMaxBuffer.
func (c *fanOutConfig) policy(n int) fanout.Policy {
	p := fanout.Policy{EvictAfter: c.evictAfter, Buffer: c.buffer}
	if p.Buffer > 0 {
		return p
	}
	p.Buffer, p.BufferDefault = fanOutMaxBuffer, true
	// In int64: on 32-bit systems 1 MiB times 2048 destinations wraps.
	for p.Buffer > fanOutMinBuffer && int64(p.Buffer)*int64(n+1) > fanOutBudget {
		p.Buffer /= 2
	}
	return p
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
// readiness on the Go netpoller; nothing spins. IORING_OP_TEE and
// IORING_OP_SPLICE are not used: they run on io-wq kernel threads, one
// hand-off per operation, which measured slower here than tee(2) and
// splice(2) on the netpoller (docs/design.md). On the io_uring backend
// the chunks of a regular-file source that are not in the page cache are
// first read in by the ring, as for a copy to a socket, whatever
// WithRingMinConcurrency says; and where every destination is a socket
// and the buffer is the default, no chunk is teed: each destination is
// sent the file's pages that the ring has read in with sendfile(2), from
// its own offset, so that the destinations do not move in step (the
// fastest may then run up to 16 MiB ahead of the slowest: no pipe holds
// those bytes). The file's size is read again before each grant of it,
// so a file that grows is sent up to the size it has when its last
// bytes are granted, as the teeing form reads up to the end its reads
// find; a destination that finds the file truncated short of what was
// granted fails with an error matching io.ErrUnexpectedEOF. Elsewhere,
// or when src has
// no descriptor, FanOut reads a chunk into a userspace buffer and writes
// it to every destination, with the same policies.
//
// A destination may fall behind the fastest one by its buffer
// (FanOutBuffer; 16 MiB in the sendfile(2) form above). When its buffer
// is full the policy decides: by default
// the others wait for it; with FanOutEvictAfter it is dropped after the
// deadline. A destination whose write fails (EPIPE or ECONNRESET once its
// peer is gone, or any other error) is dropped at once with that error,
// wrapped so that errors.Is(err, syscall.EPIPE) holds; the others go on.
// Once no destination is left, src is read no further, and FanOut
// returns without waiting for src's next input: a read of src under way
// then is interrupted as a cancel interrupts it (its deadline cleared
// after); where none is, src and its deadlines are left as they are.
//
// A regular-file src is read from its current offset, which is left after
// the bytes read, as io.Copy leaves it. An *io.LimitedReader src is
// honoured: at most N bytes are read and N is decreased by the bytes read.
// A *RateLimitedReader src (RateLimit) is paced by its Limiter, on the
// kernel path too, and a cancel or Close ends a wait for a grant.
// When src fails, every destination still in the copy receives the bytes
// read before and then reports the read error.
//
// Cancelling ctx (or closing the engine) stops the copy: every destination
// not yet done reports an error for which errors.Is(err, ctx.Err()) holds
// (and ErrClosed after Close), with Written counting what it received.
// Waits on descriptors are interrupted by setting a read or write deadline
// in the past on those that have SetReadDeadline/SetWriteDeadline (sockets,
// pipes, *PipeReader, *PipeWriter); FanOut clears the deadlines it set
// before it returns. A source in blocking mode (a pipe, socket or
// terminal as os.NewFile of a descriptor without O_NONBLOCK, f.Fd() or
// term.MakeRaw leave it) is read only once poll(2) reports input, and
// waited for in poll(2) slices, so that a cancel reaches it too. A
// destination pipe or socket in blocking mode (an *os.File: another
// type's Write is called, as io.Copy calls it) is written with calls that
// do not wait (send(2) with MSG_DONTWAIT, pwritev2(2) with RWF_NOWAIT),
// waiting for room in poll(2) slices, so that an eviction or a cancel
// reaches it; a terminal in blocking mode is not: a write to one waits in
// the kernel until all of it fits, as io.Copy's does. A Write or Read
// that cannot be interrupted delays the return until it returns by
// itself.
//
// A nil src (or one holding a nil pointer, also inside an
// *io.LimitedReader) fails every destination; a nil destination fails
// with an error of its own and does not disturb the others (both errors
// wrap os.ErrInvalid), and so does a pointer that is in dsts before
// (each destination is written by a goroutine of its own: one writer
// twice would see concurrent Writes, and every byte twice in no useful
// order). One descriptor under two values (a *net.TCPConn and its File,
// or a wrapper of it) is not refused, unlike Relay's ends: its peer gets
// the stream twice, interleaved, so callers pass each one once. No
// destinations means nothing is read and an empty result. FanOut never
// closes src or dsts.
//
// If src's Read or a destination's Write panics, FanOut stops every
// destination (and interrupts a read of src waiting for input, as a
// cancel does), waits for the goroutines it started, and panics with the
// same value in the calling goroutine, as io.Copy would; the engine is
// left as if the fan-out had returned.
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
	if nilReader(src) {
		return failAll(fmt.Errorf("pipes: fan-out: %w", errNilSource))
	}
	if ctx.Err() != nil {
		return failAll(ctxerr.Wrap("pipes: fan-out not started", ctx, nil))
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
	defer e.end()
	ds := make([]*fanout.Dest, 0, len(dsts))
	defer func() {
		// Counted also when the fan-out panics: the bytes did move.
		var total int64
		for _, d := range ds {
			total += d.Written()
		}
		e.stats.bytes.Add(uint64(total))
	}()
	var seen map[io.Writer]int // pointer destinations: where each was first
	for i, w := range dsts {
		if isNil(w) {
			res[i].Err = fmt.Errorf("pipes: fan-out to destination %d: %w", i, errNilDestination)
			continue
		}
		if reflect.TypeOf(w).Kind() == reflect.Pointer {
			if first, dup := seen[w]; dup {
				res[i].Err = fmt.Errorf("pipes: fan-out to destination %d: the same %T as destination %d: %w", i, w, first, os.ErrInvalid)
				continue
			}
			if seen == nil {
				seen = make(map[io.Writer]int, len(dsts))
			}
			seen[w] = i
		}
		ds = append(ds, fanout.NewDest(i, blockingDest(w)))
	}
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(e.ctx, func() { cancel(ErrClosed) })
	defer stop()
	if len(ds) > 0 {
		p := cfg.policy(len(ds))
		// A destination's Write that panicked ends the fan-out at once,
		// a read of src waiting for input included; so does the failure
		// of the last destination left, which nothing would read for.
		p.OnPanic = func() { cancel(errFanOutPanicked) }
		p.OnNoneLeft = func() { cancel(errFanOutNoneLeft) }
		e.fanOut(cctx, src, ds, p)
	}
	stop() // a Close from now on changes no destination's error
	for _, d := range ds {
		res[d.Index()] = Result{Written: d.Written(), Err: e.closedErr(cctx, d.Err())}
	}
	return res
}

// errFanOutPanicked is the cause the context of a fan-out ends with
// when a destination's Write panicked. No caller sees it: FanOut then
// panics.
var errFanOutPanicked = errors.New("pipes: fan-out: a destination's Write panicked")

// errFanOutNoneLeft is the cause the context of a fan-out ends with once
// every destination has returned. No destination's error wraps it: none
// is left to stop.
var errFanOutNoneLeft = errors.New("pipes: fan-out: no destination left")

// fanOut runs a fan-out of src to ds on the fastest path: the kernel's
// where it applies, else userspace. It honours an *io.LimitedReader and
// a *RateLimitedReader around src, as a copy does (unwrapSource), and
// interrupts the reads of src when ctx ends; the fan-out interrupts the
// writes of the destinations it stops.
func (e *Engine) fanOut(ctx context.Context, src io.Reader, ds []*fanout.Dest, p fanout.Policy) {
	s := unwrapSource(src)
	if s.lr != nil && s.lr.N <= 0 {
		return
	}
	defer interruptOnDone(ctx, nil, s.r)()
	var read int64 // by the kernel path, which reads nothing where it falls back
	if s.lr != nil {
		// Also when a destination's Write panics: N counts the bytes
		// read, as after a recovered io.Copy.
		defer func() { s.lr.N -= read }()
	}
	why := e.fanOutKernel(ctx, s.r, s.limit, s.pacer, ds, p, &read)
	if why == inKernel {
		return
	}
	e.stats.userspace[why].Add(1)
	r, wrapped := blockingSource(ctx, s.r)
	if !wrapped && s.pacer == nil && !hasLimiter(s.r) {
		// src as it is: a limit is its own *io.LimitedReader's.
		fanout.RunUserspace(ctx, src, ds, p)
		return
	}
	// Rebuild the chain: a blocking descriptor read in poll(2) slices
	// and the Limiter's waits, both ended by ctx.
	r, settle := s.wrap(ctx, r)
	defer settle()
	fanout.RunUserspace(ctx, r, ds, p)
}
