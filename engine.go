package pipes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/pipes-go/pipes/internal/ctxerr"
	"github.com/pipes-go/pipes/internal/fanout"
	"github.com/pipes-go/pipes/internal/fd"
	"github.com/pipes-go/pipes/internal/uring"
)

// Engine runs copies. It owns the kernel resources they share: a pool of
// intermediate pipes and, on the io_uring backend, a ring with its
// completion reaper. An Engine is safe for concurrent use; most programs
// use the one DefaultEngine returns, through the package-level Copy and
// CopyAsync.
type Engine struct {
	cfg       config
	backend   Backend
	ringSetup string // Stats.RingSetup: why the engine is not on io_uring
	newErr    error  // NewEngine's error for DefaultEngine: every copy fails with it (see brokenEngine)

	ctx    context.Context // cancelled by Close, with cause ErrClosed
	cancel context.CancelCauseFunc
	life   lifetime  // wakes the waits of copies on ctx when Close cancels it
	copies fd.Group  // life's: Close closes it
	free   sync.Pool // of *interruption: life's, and every tie's

	mu       sync.Mutex
	closed   bool
	closing  chan struct{} // closed once the first Close has returned; nil for a broken engine
	inFlight sync.WaitGroup

	stats  counters
	meters sync.Pool  // of *meter: the meters of sync copies (Engine.meter)
	sys    *sysEngine // the platform part: pipe pool, ring
}

// NewEngine builds an engine. Unless WithBackend says otherwise, the
// backend comes from PIPES_BACKEND: "auto" (the default) picks io_uring
// when io_uring_setup works and its probe reports IORING_OP_SPLICE, and
// splice otherwise; "io_uring" requires io_uring and makes NewEngine fail
// with an error wrapping errors.ErrUnsupported (and the kernel's errno)
// where it is unavailable; "splice" never uses io_uring. On operating
// systems without splice(2) every engine copies in userspace. A nil
// Option is ignored.
func NewEngine(opts ...Option) (*Engine, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if !cfg.backendByOption {
		// PIPES_BACKEND is read, and a bad value refused, only where
		// it chooses.
		env, err := backendFromEnv()
		if err != nil {
			return nil, err
		}
		cfg.backend = env
	}
	switch cfg.backend {
	case backendAuto, BackendIOUring, BackendSplice, BackendUserspace:
	default:
		return nil, fmt.Errorf("pipes: unknown backend %q", cfg.backend)
	}
	e := &Engine{cfg: cfg}
	e.ctx, e.cancel = context.WithCancelCause(context.Background())
	e.life = lifetime{ctx: e.ctx, copies: &e.copies, free: &e.free}
	sys, b, noRing, err := newSysEngine(&e.cfg, &e.stats)
	if err != nil {
		e.cancel(ErrClosed)
		return nil, err
	}
	e.sys, e.backend = sys, b
	if b != BackendIOUring {
		e.ringSetup = ringSetupText(&e.cfg, noRing)
	}
	return e, nil
}

// ringSetupText is Stats.RingSetup for an engine not on io_uring: noRing
// is why newSysEngine did not set a ring up, nil when it did not try
// because the backend was asked for.
func ringSetupText(cfg *config, noRing error) string {
	if noRing != nil {
		return noRing.Error()
	}
	if cfg.backendByOption {
		return "disabled by WithBackend(" + string(cfg.backend) + ")"
	}
	return "disabled by PIPES_BACKEND=" + string(cfg.backend)
}

// brokenEngine returns a closed engine whose copies fail with err.
func brokenEngine(err error) *Engine {
	e := &Engine{newErr: err, closed: true, backend: backendAuto, ringSetup: err.Error()}
	e.ctx, e.cancel = context.WithCancelCause(context.Background())
	e.cancel(err)
	return e
}

// Backend reports the backend the engine chose at NewEngine. The
// DefaultEngine, where NewEngine failed for it (a bad PIPES_BACKEND,
// io_uring required and missing), chose none and reports "auto".
func (e *Engine) Backend() Backend {
	return e.backend
}

// Close cancels the copies in flight, waits for them to return, and
// releases the ring, its eventfd and every pooled pipe. Copies cancelled
// this way fail with an error wrapping ErrClosed; copies started after
// Close fail with ErrClosed. Close is safe to call more than once, also
// from many goroutines at once: later calls wait until the first has
// returned, and return nil. A copy's own reader or writer must not call
// Close, which would wait for that copy. Nor can Close end a call the
// engine has no way to interrupt: a Read or Write of a value with no
// descriptor and no deadlines that never returns, or a read waiting in a
// file system for its server (FUSE, NFS); Close waits for such a call to
// return, as the copy does.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		closing := e.closing
		e.mu.Unlock()
		if closing != nil {
			<-closing
		}
		return nil
	}
	e.closed = true
	e.closing = make(chan struct{})
	e.mu.Unlock()
	defer close(e.closing)

	e.cancel(ErrClosed)
	e.copies.Close()
	e.inFlight.Wait()
	return e.sys.close()
}

// begin registers a copy; it fails once the engine is closed.
func (e *Engine) begin() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		if e.newErr != nil {
			return e.newErr
		}
		return ErrClosed
	}
	e.inFlight.Add(1)
	e.stats.copies.Add(1)
	e.stats.inFlight.Add(1)
	return nil
}

// end unregisters a copy. Its bytes were counted as they moved (meter).
func (e *Engine) end() {
	e.stats.inFlight.Add(-1)
	e.inFlight.Done()
}

// Copy copies from src to dst until EOF on src or an error, with the
// semantics of io.Copy; see the package-level Copy. It runs in the calling
// goroutine: a single stream is fastest as a direct splice(2) loop (see
// docs/design.md). Close cancels a Copy in flight.
func (e *Engine) Copy(dst io.Writer, src io.Reader) (written int64, err error) {
	if err := e.begin(); err != nil {
		return 0, err
	}
	defer e.end()
	m := e.meter()
	written, err = e.copy(&e.life, dst, src, m)
	e.putMeter(m)
	return written, e.closedErr(e.ctx, err)
}

// meter returns a meter for a sync copy (Copy, CopyContext), which
// gives it back with putMeter once the copy has returned: the engine
// recycles them (Engine.meters), as a meter escapes to the heap (the
// copy's splice.End holds it), an allocation per copy otherwise.
func (e *Engine) meter() *meter {
	m, _ := e.meters.Get().(*meter)
	if m == nil {
		m = new(meter)
	}
	m.engine = e.stats.bytes.stripe()
	return m
}

// putMeter recycles m, unless the copy handed it to a wrapper of the
// caller's values (the userspace path's meteredWriter), which a Read or
// Write of theirs could still hold.
func (e *Engine) putMeter(m *meter) {
	if m.lent {
		return
	}
	m.n.Store(0)
	m.engine, m.also, m.live = nil, nil, false
	e.meters.Put(m)
}

// CopyAsync starts a copy from src to dst in a new goroutine and returns
// at once; see the package-level CopyAsync. A nil ctx means
// context.Background(). If ctx is already done, or the engine is closed,
// the Future is resolved at once with that error and nothing is copied.
// A panic of src's Read or dst's Write in that goroutine ends the
// process, as in `go io.Copy(dst, src)`, with the Future unresolved: no
// caller is known to wait for it (CopyBatch, which waits, raises it in
// its caller).
func (e *Engine) CopyAsync(ctx context.Context, dst io.Writer, src io.Reader) *Future {
	return e.copyAsync(ctx, dst, src, nil)
}

// copyAsync is CopyAsync. With a non-nil caught, a panic of src's Read or
// dst's Write is recovered: caught is called, and the Future is resolved
// with an error and holds the value, for a caller that waits for it to
// raise it again (CopyBatch). Without, the panic ends the process, as in
// `go io.Copy(dst, src)`: no caller is known to wait.
func (e *Engine) copyAsync(ctx context.Context, dst io.Writer, src io.Reader, caught func()) *Future {
	f := newFuture()
	if ctx == nil {
		ctx = context.Background()
	}
	if ctx.Err() != nil {
		f.resolve(0, ctxerr.Wrap("pipes: copy not started", ctx, nil))
		return f
	}
	if err := e.begin(); err != nil {
		f.resolve(0, err)
		return f
	}
	go e.runAsync(ctx, f, dst, src, caught)
	return f
}

// runAsync is the goroutine of copyAsync: it copies and resolves f.
func (e *Engine) runAsync(ctx context.Context, f *Future, dst io.Writer, src io.Reader, caught func()) {
	var n int64
	var err error
	returned := false
	defer func() {
		if p := recover(); p == nil && !returned {
			// runtime.Goexit in a Read or Write (t.FailNow in a test's).
			n, err = f.meter.n.Load(), errGoexit
		} else if p != nil {
			if caught == nil {
				// Ends the process with f unresolved: a Wait never
				// sees the copy as done. The panic's own frames are
				// still on the stack, so the trace shows them.
				panic(p)
			}
			f.panic = p
			err = fmt.Errorf("pipes: copy: a Read or Write panicked: %v", p)
			caught()
		}
		// Out of Stats.InFlight before Wait returns, and resolved
		// before Close can return: once it has, every Future is done.
		e.stats.inFlight.Add(-1)
		f.resolve(n, err)
		e.inFlight.Done()
	}()
	f.meter.engine = e.stats.bytes.stripe()
	n, err = e.copyUntil(ctx, dst, src, &f.meter)
	returned = true
}

// errGoexit resolves the Future of a copy whose Read or Write called
// runtime.Goexit.
var errGoexit = fanout.ErrGoexit

// CopyContext copies from src to dst in the calling goroutine until EOF
// on src, an error, or the end of ctx; see the package-level CopyContext.
// It has the semantics of CopyAsync(ctx, dst, src).Wait(), without the
// goroutine and the Future. A nil ctx means context.Background().
func (e *Engine) CopyContext(ctx context.Context, dst io.Writer, src io.Reader) (written int64, err error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if ctx.Err() != nil {
		return 0, ctxerr.Wrap("pipes: copy not started", ctx, nil)
	}
	if err := e.begin(); err != nil {
		return 0, err
	}
	defer e.end()
	m := e.meter()
	defer e.putMeter(m)
	return e.copyUntil(ctx, dst, src, m)
}

// copyUntil runs a copy that ends when ctx does or the engine is closed
// (CopyContext, CopyAsync). A ctx that cannot end needs no context of
// the copy's own: the copy runs on the engine's, which Close wakes
// through the engine's lifetime. Otherwise the copy runs on a tie.
func (e *Engine) copyUntil(ctx context.Context, dst io.Writer, src io.Reader, m *meter) (int64, error) {
	if ctx.Done() == nil {
		n, err := e.copy(&e.life, dst, src, m)
		return n, e.closedErr(e.ctx, err)
	}
	t := new(tie)
	t.bind(e, ctx)
	defer t.unbind()
	n, err := e.copy(&t.lifetime, dst, src, m)
	return n, e.closedErr(t.ctx, err)
}

// closedErr marks an error caused by Close as wrapping ErrClosed.
func (e *Engine) closedErr(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, ErrClosed) {
		return err
	}
	if context.Cause(ctx) == ErrClosed && errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// copy honours *io.LimitedReader, tries the kernel paths, and falls back
// to a userspace copy when they report that they did not handle the pair.
// It runs on life's context: its waits are woken when that ends.
func (e *Engine) copy(life *lifetime, dst io.Writer, src io.Reader, m *meter) (int64, error) {
	ctx := life.ctx
	s := unwrapSource(src)
	if s.lr != nil && s.lr.N <= 0 {
		return 0, nil
	}
	if s.pacer != nil && !s.pacer.valid() {
		// The kernel paths would take its grants of 0 bytes for EOF.
		return 0, errBadLimiter
	}
	n, why, err := e.sys.copyFD(ctx, life, dst, s.r, s.limit, m, s.pacer)
	if why == inKernel && n == 0 && err != nil && ctx.Err() == nil &&
		errors.Is(err, os.ErrDeadlineExceeded) && undelivered(err) == 0 {
		// A deadline that had passed before anything was read: the
		// kernel path waits for dst before it reads src, io.Copy reads
		// first, and a src at EOF is a success there. A userspace copy
		// reads first too: EOF ends it, bytes meet the deadline. A
		// regular file is only probed for its end: a userspace copy
		// would take its first buffer off the offset the kernel path
		// left where it was, and lose it in the failed write.
		eof, file := fileAtEOF(s.r)
		switch {
		case !file:
			return copyUserspace(ctx, life, dst, src, s, m)
		case eof:
			return 0, nil
		}
	}
	if why == inKernel {
		if s.lr != nil {
			s.lr.N -= n + undelivered(err) // what was read, as io.Copy's
		}
		if err != nil && ctx.Err() != nil {
			err = ctxerr.Wrap("pipes", ctx, err)
		} else if err != nil {
			err = closedFileErr(err, dst, s.r)
		}
		return n, err
	}
	e.stats.userspace[why].Add(1)
	// A nil pointer in an interface (a nil *net.TCPConn, say) would
	// panic in its Read or Write: in CopyAsync's goroutine, a panic no
	// caller can recover. Fail as io.Copy fails on a nil *os.File.
	switch {
	case isNil(dst):
		return 0, errNilDestination
	case nilReader(src):
		return 0, errNilSource
	}
	s.files = why == fallbackFileToFile
	return copyUserspace(ctx, life, dst, src, s, m)
}

// copySource is a copy's src with the wrappers the engine honours taken off:
// an *io.LimitedReader (limit, and N to update) and a
// *RateLimitedReader (pacer), in either order.
type copySource struct {
	r     io.Reader // what is left: a reader with a descriptor, or not
	limit int64     // -1: none
	lr    *io.LimitedReader
	pacer *Limiter
	// files: r and the copy's destination are regular files
	// (*os.File), between which io.Copy uses copy_file_range(2) and
	// neither waits. Otherwise either may be a descriptor in blocking
	// mode, which a userspace copy reads only once it has input
	// (blockingSource) and writes without waiting (blockingDest).
	files bool
}

// wrap puts back around r (the source, or a wrapper of the engine's
// around it) the Limiter's pacing, its waits ended by ctx, and the
// limit. Once the copy has returned, settle moves the bytes read off the
// caller's *io.LimitedReader.
func (s copySource) wrap(ctx context.Context, r io.Reader) (_ io.Reader, settle func()) {
	if s.pacer != nil || hasLimiter(r) {
		r = &pacedReader{ctx: ctx, r: r, l: s.pacer}
	}
	if s.lr == nil {
		return r, func() {}
	}
	l := &io.LimitedReader{R: r, N: s.lr.N}
	return l, func() { s.lr.N = l.N }
}

func unwrapSource(src io.Reader) copySource {
	s := copySource{r: src, limit: -1}
	for range 2 {
		switch x := s.r.(type) {
		case *io.LimitedReader:
			if s.lr != nil || x == nil {
				return s
			}
			s.lr, s.limit, s.r = x, max(x.N, 0), x.R
		case *RateLimitedReader:
			if s.pacer != nil || x == nil || x.L == nil {
				return s
			}
			s.pacer, s.r = x.L, x.R
		default:
			return s
		}
	}
	return s
}

// copyUserspace is io.Copy, made cancellable (ctx checked between reads
// or writes, and waits on descriptors woken through deadlines), and kept
// from recursing into this package's ReadFrom and WriteTo (which call the
// engine).
func copyUserspace(ctx context.Context, life *lifetime, dst io.Writer, src io.Reader, s copySource, m *meter) (int64, error) {
	if s.files && s.pacer == nil {
		return copyFiles(ctx, dst, s, m)
	}
	_, dstFile := dst.(*os.File)
	_, srcFile := s.r.(*os.File)
	if !s.files {
		// A pipe or socket in blocking mode is written with calls that
		// do not wait, its waits for room ended by the interruption.
		dst = blockingDest(dst)
	}
	defer life.interrupt(dst, s.r).stop()
	switch w := dst.(type) {
	case *PipeWriter:
		dst = struct{ io.Writer }{w}
	}
	blocking, wrapped := s.r, false
	if !s.files {
		blocking, wrapped = blockingSource(ctx, s.r)
	}
	if pr, ok := s.r.(*PipeReader); ok || s.pacer != nil || wrapped || hasLimiter(s.r) {
		// Rebuild the chain: a *PipeReader hidden (its WriteTo would
		// call the engine again), a descriptor in blocking mode read
		// only once it has input, the Limiters' waits ended by ctx.
		r := blocking
		if ok {
			r = struct{ io.Reader }{pr}
		}
		var settle func()
		src, settle = s.wrap(ctx, r)
		defer settle()
	}
	if ctx.Done() != nil && !(dstFile && srcFile) {
		// A copy with an end that has no descriptor may never wait on
		// one, and then no deadline ends it: it checks ctx itself. The
		// side wrapped is the one whose fast path io.Copy does not take,
		// so that it takes the same path as on src and dst themselves;
		// a wrapped dst keeps its ReadFrom (ctxReaderFrom), which the
		// WriteTo of a *net.TCPConn or *os.File src hands the copy to,
		// as under io.Copy. (Between two *os.File it is left as it is:
		// the source's WriteTo hands the copy to the destination's
		// ReadFrom, whose copy_file_range(2) a wrapped reader would
		// lose, and a copy between two files that never wait is one
		// the kernel path took. With a socket end it is wrapped too:
		// Go's own splice would take a pipe of its private cache,
		// outside the engine's bound, and keep it until the GC frees
		// it.)
		if _, ok := src.(io.WriterTo); ok {
			dst = newCtxWriter(ctx, dst)
		} else {
			src = &ctxReader{ctx: ctx, r: src}
		}
	}
	var n int64
	var err error
	_, wt := src.(io.WriterTo)
	_, rf := dst.(io.ReaderFrom)
	if (wt || rf) && !m.live {
		// Their fast paths would be lost behind a counting wrapper:
		// the bytes are counted when the copy ends.
		n, err = io.Copy(dst, src)
		m.Add(n)
	} else {
		// io.Copy's own buffer loop (or src's WriteTo into the counting
		// writer): counting each Write costs nothing.
		m.lent = true
		n, err = io.Copy(newMeteredWriter(dst, m), src)
	}
	if err != nil && ctx.Err() != nil {
		err = ctxerr.Wrap("pipes", ctx, err)
	}
	return n, err
}

// interruptOnDone makes a read of src or a write to dst blocked in the
// Go netpoller return when ctx is done, by setting a deadline in the past
// on those that have deadlines (sockets, pipes, *PipeReader, ...): see
// fd.OnDone. The returned stop must be called when the copy has returned:
// it clears the deadlines it set, leaving src and dst with none.
func interruptOnDone(ctx context.Context, dst io.Writer, src io.Reader) (stop func()) {
	if lr, ok := src.(*io.LimitedReader); ok {
		src = lr.R
	}
	return fd.OnDone(ctx, dst, src)
}

// lifetime ends the waits of the copies on its context on their
// caller's values (deadlines in the past, cleared after: internal/fd)
// when that context ends. They are woken through copies, an fd.Group
// closed once the context has ended: the engine's lifetime (Copy, and
// CopyContext and CopyAsync with a context that cannot end), whose
// Group Close closes, or a tie's. The Group costs a copy its lock twice
// and no allocation (its interruptions are recycled through free, the
// engine's), where a context.AfterFunc would cost three allocations and
// the context's lock twice.
type lifetime struct {
	ctx    context.Context // copies on it are woken through copies
	copies *fd.Group       // closed once ctx has ended
	free   *sync.Pool      // of *interruption
}

// interruption is one copy's arrangement made by lifetime.interrupt: its
// Deadlines, a member of the lifetime's Group.
type interruption struct {
	life   *lifetime
	d      fd.Deadlines
	member fd.Member // its Target is &d
}

// interrupt arranges for the waits of a copy on l's context, reading src
// and writing dst, to end when that context does. Its stop, called once
// the copy has returned, undoes that and clears the deadlines it set. A
// nil *interruption (nothing to interrupt) stops as a no-op.
func (l *lifetime) interrupt(dst, src any) *interruption {
	if l.ctx.Done() == nil {
		return nil
	}
	d := fd.Of(dst, src)
	if d.None() {
		return nil
	}
	in, _ := l.free.Get().(*interruption)
	if in == nil {
		in = new(interruption)
	}
	in.life, in.d = l, d
	in.member = fd.Member{T: &in.d}
	l.copies.Join(&in.member)
	return in
}

func (in *interruption) stop() {
	if in == nil {
		return
	}
	// Once it has left, the Group holds no reference to it.
	l := in.life
	l.copies.Leave(&in.member)
	*in = interruption{}
	l.free.Put(in)
}

// A tie is the context of its own that a copy or a relay runs on (ctx,
// a child of its caller's), which ends when the caller's does, when the
// engine is closed (cause ErrClosed), or when end is called, with the
// lifetime of the copies on it: their waits are woken through copies
// once ctx has ended. The engine's Close reaches it as a member of the
// engine's lifetime (Wake), and the caller's context through one
// context.AfterFunc on that context (none where it cannot end). Arming
// an AfterFunc on ctx instead, for each copy, would allocate ctx's
// channel and map of children as well, and a context.AfterFunc on the
// engine's context takes a lock every copy shares (docs/benchmarks.md,
// "Per-copy cost of a context").
type tie struct {
	lifetime                         // ctx: the tie's own; copies: &group
	cancel   context.CancelCauseFunc // ctx's
	group    fd.Group
	member   fd.Member   // in engine's copies; its Target is the tie
	engine   *lifetime   // the engine's
	unwatch  func() bool // stops the AfterFunc on the caller's context; nil if none
}

// bind makes t a tie of the engine e, under the caller's parent.
func (t *tie) bind(e *Engine, parent context.Context) {
	ctx, cancel := context.WithCancelCause(parent)
	t.lifetime = lifetime{ctx: ctx, copies: &t.group, free: &e.free}
	t.cancel = cancel
	t.engine = &e.life
	t.member = fd.Member{T: t}
	t.engine.copies.Join(&t.member)
	if parent.Done() != nil {
		t.unwatch = context.AfterFunc(parent, t.parentDone)
	}
}

// parentDone wakes the waits of t's copies once the caller's context has
// ended. That context's cancellation cancels t's too, but in no set
// order with this AfterFunc: a copy woken before its context reports the
// end would take the wake for a deadline of the caller's.
func (t *tie) parentDone() {
	<-t.ctx.Done()
	t.group.Close()
}

// end cancels t's context with cause and wakes the waits of its copies.
// The wake runs in a goroutine of its own, as a context.AfterFunc's
// would: it calls the deadline setters of the copies' values, which are
// the caller's code, and end may be called under a lock of the relay's.
func (t *tie) end(cause error) {
	t.cancel(cause)
	go t.group.Close()
}

// Wake ends t with ErrClosed: the engine's Close.
func (t *tie) Wake() { t.end(ErrClosed) }

// Reset does nothing: t's context stays cancelled.
func (t *tie) Reset() {}

// unbind undoes bind once every copy on t has returned.
func (t *tie) unbind() {
	t.engine.copies.Leave(&t.member)
	if t.unwatch != nil {
		t.unwatch()
	}
	t.cancel(nil)
}

// meteredWriter counts the bytes its Writes deliver. A Write returning a
// count below 0 or above len(p) counts none: io.Copy fails with it
// ("invalid write result") and counts none of it either, so the meter
// never differs from what the copy returns.
type meteredWriter struct {
	w io.Writer
	m *meter
}

func (w *meteredWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if n >= 0 && n <= len(p) {
		w.m.Add(int64(n))
	}
	return n, err
}

// newMeteredWriter is a meteredWriter of w, with w's ReadFrom where it
// has one (meteredReaderFrom).
func newMeteredWriter(w io.Writer, m *meter) io.Writer {
	mw := &meteredWriter{w: w, m: m}
	if _, ok := w.(io.ReaderFrom); ok {
		return &meteredReaderFrom{mw}
	}
	return mw
}

// meteredReaderFrom is a meteredWriter of a writer with a ReadFrom,
// which it keeps: io.Copy hands a copy to it, also from a source's
// WriteTo (net.TCPConn's and os.File's copy into their writer with
// io.Copy), and that changes what the writer does with the bytes. A
// *bufio.Writer (or *bufio.ReadWriter) with an empty buffer passes the
// copy on to its own writer's ReadFrom, so that each byte reaches the
// connection as it is copied, where Writes of a few bytes would wait in
// its buffer for a Flush that no copy makes: a relay's peer would never
// see a short reply. ReadFrom counts the bytes of each read of the
// source when the writer's ReadFrom asks for the next (a buffer loop,
// such as io.Copy's, has written them by then), and sets the count
// right with what the writer's ReadFrom reports when it returns. So a
// relay direction whose ReadFrom never returns (its Write calls
// runtime.Goexit) counts what reached the writer, not also a buffer it
// read and never wrote.
type meteredReaderFrom struct{ *meteredWriter }

func (w *meteredReaderFrom) ReadFrom(r io.Reader) (int64, error) {
	cr := &meteredReader{r: r, m: w.m}
	n, err := w.w.(io.ReaderFrom).ReadFrom(cr)
	w.m.Add(n - cr.n)
	return n, err
}

// meteredReader adds the bytes each of its Reads returns to m, and to
// n, when the next Read is asked for.
type meteredReader struct {
	r    io.Reader
	m    *meter
	n    int64 // bytes added to m
	last int64 // bytes the last Read returned, not added yet
}

func (c *meteredReader) Read(p []byte) (int, error) {
	if c.last > 0 {
		c.n += c.last
		c.m.Add(c.last)
		c.last = 0
	}
	n, err := c.r.Read(p)
	if n > 0 && n <= len(p) {
		c.last = int64(n)
	}
	return n, err
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, ctxerr.Wrap("pipes", c.ctx, nil)
	}
	return c.r.Read(p)
}

// ctxWriter fails writes once ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

// newCtxWriter is a ctxWriter of w, with w's ReadFrom where it has one
// (ctxReaderFrom).
func newCtxWriter(ctx context.Context, w io.Writer) io.Writer {
	cw := &ctxWriter{ctx: ctx, w: w}
	if _, ok := w.(io.ReaderFrom); ok {
		return &ctxReaderFrom{cw}
	}
	return cw
}

// ctxReaderFrom is a ctxWriter of a writer with a ReadFrom, which it
// keeps (see meteredReaderFrom), checking ctx before each read of the
// source instead.
type ctxReaderFrom struct{ *ctxWriter }

func (c *ctxReaderFrom) ReadFrom(r io.Reader) (int64, error) {
	return c.w.(io.ReaderFrom).ReadFrom(&ctxReader{ctx: c.ctx, r: r})
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, ctxerr.Wrap("pipes", c.ctx, nil)
	}
	return c.w.Write(p)
}

// fileChunk bounds one round of copyFiles: how long a cancelled copy
// between two files may go on.
const fileChunk = 64 << 20

// copyFiles copies between two regular files as io.Copy does, with
// copy_file_range(2) inside dst's ReadFrom (which may share extents), in
// rounds of at most fileChunk bytes with ctx checked between them:
// neither file waits, so nothing else would end a long copy. It updates
// s.lr as io.Copy would: by the bytes read from the source, which a
// failed write leaves more than the bytes written where io.Copy falls
// back to its buffer loop (copy_file_range(2) across file systems).
func copyFiles(ctx context.Context, dst io.Writer, s copySource, m *meter) (int64, error) {
	var n, read int64
	var err error
	for s.limit < 0 || read < s.limit {
		if ctx.Err() != nil {
			err = ctxerr.Wrap("pipes", ctx, nil)
			break
		}
		round := io.LimitedReader{R: s.r, N: fileChunk}
		if s.limit >= 0 {
			round.N = min(round.N, s.limit-read)
		}
		start := round.N
		var k int64
		k, err = io.Copy(dst, &round)
		n += k
		read += start - round.N
		m.Add(k)
		if err != nil || round.N > 0 {
			break // an error, or EOF
		}
	}
	if s.lr != nil {
		s.lr.N -= read
	}
	return n, err
}

// Stats is a snapshot of an engine's counters. Every field is a number
// but RingSetup, so a Stats can be published as it is: with the standard
// library's expvar,
//
//	expvar.Publish("pipes", expvar.Func(func() any { return e.Stats() }))
//
// serves it as JSON on /debug/vars. Stats is cheap: atomic loads and
// the pipe pool's lock, no allocation.
type Stats struct {
	Copies   uint64 // copies started: a FanOut is one, a relay one per direction
	InFlight int64  // copies running now: never more than Copies in one snapshot
	Bytes    uint64 // bytes delivered, counted as they move (see Future.Written); FanOut's, and a userspace copy's through a ReaderFrom or WriterTo, when it ends
	// Splice counts the copies run by the splice(2) loop, also those
	// it moved in part through its userspace buffer: rounds with no
	// pool pipe free (PoolExhausted), at TCP's urgent mark, and every
	// round after the kernel refused a splice midway (docs/design.md,
	// "A destination that refuses some pages"); and the FanOuts run in
	// the kernel (splice(2) and tee(2), or sendfile(2) from a regular
	// file into sockets).
	Splice   uint64
	Sendfile uint64 // file -> socket copies sent with sendfile(2) (warmed by the ring or not: see Warmed)
	Ring     uint64 // copies from files to pipes or files whose reads went through io_uring

	// Userspace counts the copies (and fan-outs) that went through a
	// userspace buffer, as io.Copy does, instead of the kernel: the sum
	// of UserspaceNoFD, UserspaceFileToFile and UserspaceRefused, which
	// say why.
	Userspace uint64
	// UserspaceNoFD counts fallbacks where an end has no descriptor the
	// kernel can splice: a value that is not a syscall.Conn (a
	// bytes.Buffer, a net.Pipe, a *tls.Conn, a wrapper hiding its
	// descriptor), or a datagram, seqpacket or listening socket, a
	// directory. A FanOut also counts here when its source is a device
	// or a blocking-mode pipe or socket, or no destination can be
	// spliced into. Off Linux every copy counts here.
	UserspaceNoFD uint64
	// UserspaceFileToFile counts copies between two *os.File regular
	// files, left to io.Copy, whose copy_file_range(2) is already in the
	// kernel (and may share extents).
	UserspaceFileToFile uint64
	// UserspaceRefused counts copies whose ends both have descriptors
	// but that the kernel refused before any byte moved: splice(2) or
	// sendfile(2) answered EINVAL, ENOSYS or EOPNOTSUPP (a file system
	// without splice support), or the destination is O_APPEND. For a
	// FanOut, also pipes the kernel would not give (EMFILE, the pipe
	// quota). A steady rise here points at a file system or device the
	// kernel path cannot serve.
	UserspaceRefused uint64

	Cached uint64 // chunks of ring-routed copies, warmed sendfile copies and file fan-outs found in the page cache
	Warmed uint64 // chunks of sendfile copies and file fan-outs not in the page cache, read in by the ring first
	// CachedSendTurns counts the sendfile(2) calls of chunks found in
	// the page cache that took one of the io_uring engine's turns
	// (GOMAXPROCS, or WithSendTurns; docs/design.md, "Sharing the
	// CPUs").
	CachedSendTurns uint64
	SQEs            uint64 // SQEs submitted to the ring
	Enters          uint64 // io_uring_enter calls made to submit them (WithSQPoll: hand-offs of new SQEs to the kernel's SQ thread, and waits for room in the SQ)
	CQEs            uint64 // completions reaped
	Pipes           int    // intermediate pipes alive now (pooled or in use)

	// PoolExhausted counts the times a copy found every pooled pipe in
	// use (or the kernel refused a new one) and went on without one:
	// through a userspace buffer for that round, or on another path
	// for a ring copy. A steady rise means WithMaxPipes is too low for
	// the copies whose destinations are slow.
	PoolExhausted uint64

	// RingSetup says why the engine is not on the io_uring backend; it
	// is empty when it is (Backend() == BackendIOUring). It is fixed at
	// NewEngine:
	//   - "disabled by PIPES_BACKEND=splice" or "disabled by
	//     WithBackend(splice)" when the splice backend was asked for;
	//   - else why io_uring could not be set up, with the errno's name
	//     and its usual cause, as in "io_uring_setup: operation not
	//     permitted (EPERM: kernel.io_uring_disabled or a seccomp
	//     filter)", "... (ENOSYS: ...)", "... (ENOMEM: ...)", or a
	//     missing opcode ("io_uring lacks IORING_OP_SPLICE (Linux 5.7)");
	//   - off Linux, "no io_uring on GOOS", GOOS the operating system.
	// An engine from DefaultEngine whose NewEngine failed holds that
	// error here.
	RingSetup string
}

// fallback says whether the kernel path ran a copy and, if it did not,
// why the copy goes to userspace: the index of its Stats counter.
type fallback uint8

const (
	inKernel           fallback = iota // the kernel path ran the copy
	fallbackNoFD                       // Stats.UserspaceNoFD
	fallbackFileToFile                 // Stats.UserspaceFileToFile
	fallbackRefused                    // Stats.UserspaceRefused
	numFallbacks
)

type counters struct {
	copies           atomic.Uint64
	bytes            byteCount
	spliceLoop, ring atomic.Uint64 // Stats.Splice, Stats.Ring
	sendfile         atomic.Uint64
	ringOps          uring.Counters // the io_uring driver's own
	inFlight         atomic.Int64
	// userspace counts the copies that went to userspace, by reason
	// (fallbackNoFD ...); userspace[inKernel] stays zero.
	userspace [numFallbacks]atomic.Uint64
}

// byteCount is Stats.Bytes: what every copy delivered, counted as it
// moves. Each copy adds to one stripe, picked when it starts, and the
// stripes sit on cache lines of their own, so that copies running on
// different CPUs do not pass one line back and forth with every chunk;
// Load sums them.
type byteCount struct {
	next    atomic.Uint32
	stripes [byteStripes]struct {
		n atomic.Uint64
		_ [56]byte // to the 64-byte cache line
	}
}

const byteStripes = 8

// stripe returns the counter of a new copy.
func (b *byteCount) stripe() *atomic.Uint64 {
	return &b.stripes[b.next.Add(1)%byteStripes].n
}

// Add counts n bytes of a copy that keeps no stripe.
func (b *byteCount) Add(n uint64) { b.stripe().Add(n) }

// Load returns the bytes counted so far.
func (b *byteCount) Load() uint64 {
	var sum uint64
	for i := range b.stripes {
		sum += b.stripes[i].n.Load()
	}
	return sum
}

// Stats returns the engine's counters, to check claims such as "many
// copies share few io_uring_enter calls" (SQEs / Enters), see why copies
// went to userspace, and why the engine is not on io_uring (RingSetup).
func (e *Engine) Stats() Stats {
	// InFlight is loaded before Copies: begin counts a copy in Copies
	// before InFlight, so every copy in the snapshot's InFlight is in its
	// Copies too (InFlight <= Copies).
	inFlight := e.stats.inFlight.Load()
	s := Stats{
		Copies:              e.stats.copies.Load(),
		InFlight:            inFlight,
		Bytes:               e.stats.bytes.Load(),
		Splice:              e.stats.spliceLoop.Load(),
		Sendfile:            e.stats.sendfile.Load(),
		Ring:                e.stats.ring.Load(),
		UserspaceNoFD:       e.stats.userspace[fallbackNoFD].Load(),
		UserspaceFileToFile: e.stats.userspace[fallbackFileToFile].Load(),
		UserspaceRefused:    e.stats.userspace[fallbackRefused].Load(),
		Cached:              e.stats.ringOps.CachedReads.Load(),
		Warmed:              e.stats.ringOps.Warms.Load(),
		CachedSendTurns:     e.stats.ringOps.Turns.Load(),
		SQEs:                e.stats.ringOps.SQEs.Load(),
		Enters:              e.stats.ringOps.Enters.Load(),
		CQEs:                e.stats.ringOps.CQEs.Load(),
		RingSetup:           e.ringSetup,
	}
	// The total is the sum, so a snapshot never disagrees with itself.
	s.Userspace = s.UserspaceNoFD + s.UserspaceFileToFile + s.UserspaceRefused
	if e.sys != nil {
		e.sys.poolStats(&s)
	}
	return s
}
