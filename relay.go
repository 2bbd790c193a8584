package pipes

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pipes-go/pipes/internal/ctxerr"
	"github.com/pipes-go/pipes/internal/fd"
)

// Relay copies between a and b in both directions at once until both
// directions are done, and returns what each destination received: aToB
// is the bytes b received from a, bToA the bytes a received from b. It
// runs on DefaultEngine; see Engine.RelayWith.
func Relay(ctx context.Context, a, b io.ReadWriter) (aToB, bToA int64, err error) {
	return DefaultEngine().RelayWith(ctx, a, b)
}

// Relay is RelayWith without options.
func (e *Engine) Relay(ctx context.Context, a, b io.ReadWriter) (aToB, bToA int64, err error) {
	return e.RelayWith(ctx, a, b)
}

// RelayOption configures one relay of Engine.RelayWith.
type RelayOption func(*relayConfig)

type relayConfig struct {
	idle      time.Duration // > 0: end the relay after this long without a byte
	halfClose time.Duration // > 0: bound the wait for the second direction
	progress  [2]*atomic.Int64
	// beforeFinish, a test's, is called by each direction with how it
	// ended, before it records that (finish).
	beforeFinish func(dir int, err error)
	// beforeCopy, a test's, is called by each direction before it
	// starts its copy.
	beforeCopy func(dir int)
}

// RelayProgress has the relay add the bytes each direction delivers to
// aToB and bToA as they move (counted in the kernel loop, with no wrapper
// around the ends), for a caller that reports progress while the relay
// runs. Either may be nil.
func RelayProgress(aToB, bToA *atomic.Int64) RelayOption {
	return func(c *relayConfig) { c.progress = [2]*atomic.Int64{aToB, bToA} }
}

// RelayIdleTimeout ends a relay when no byte has reached either end for
// d, with an error wrapping os.ErrDeadlineExceeded. The relay's byte
// counts are sampled by a timer (about four times per d), never per
// byte: the relay ends between d and 1.25d after its last byte. d <= 0
// (the default) means no idle timeout.
//
// A direction that runs in userspace (an end without a descriptor, such
// as a *tls.Conn or a net.Pipe) counts its bytes when the Write carrying
// them returns, up to 32 KiB at a time: a peer that takes longer than d
// to read that much (a slow link, a trickling reader) looks idle, and the
// relay ends though bytes still reach it. Choose d well above the time
// the slowest peer to be served takes to read 32 KiB. Directions on the
// kernel path count what each splice(2) moves.
func RelayIdleTimeout(d time.Duration) RelayOption {
	return func(c *relayConfig) { c.idle = d }
}

// RelayHalfCloseTimeout bounds how long a relay waits, once one direction
// has reached EOF, for the other to reach it too and for the CloseWrites
// that pass the EOFs on; when d passes first the relay is ended and fails
// with an error wrapping os.ErrDeadlineExceeded. d <= 0 (the default) waits forever.
func RelayHalfCloseTimeout(d time.Duration) RelayOption {
	return func(c *relayConfig) { c.halfClose = d }
}

// The directions of a relay, as indexes of relay.meters.
const (
	dirAToB = iota
	dirBToA
)

var relayDirNames = [2]string{"a->b", "b->a"}

// RelayWith copies from a to b and from b to a at once, until both
// directions are done, or one fails, or ctx ends.
//
// Each direction is a copy of the engine, with the semantics of
// CopyAsync: it moves the bytes in the kernel where its two ends allow
// (two TCP or unix stream sockets: socket -> pipe -> socket with
// splice(2)) and through a userspace buffer otherwise (an end without a
// file descriptor, such as one of net.Pipe). One direction runs in the
// calling goroutine, the other in a new one; each counts as a copy in
// Stats.
//
// When a direction reaches EOF, RelayWith passes the half-close on: it
// calls CloseWrite on that direction's destination if it has one (TCP and
// unix connections do), so its peer reads EOF after every byte, and goes
// on relaying the other direction (for at most RelayHalfCloseTimeout, if
// given). A destination without CloseWrite is left as it is: its peer
// sees no EOF until the caller closes it, and no EOF is passed on once
// the relay has failed (a peer must not take a relay that failed for a
// clean end). A CloseWrite that fails ends the relay with its error:
// where a TCP peer reset before it, the reset, not the ENOTCONN that
// shutdown(2) answers then (a unix socket's CloseWrite succeeds whatever
// its peer did). A CloseWrite that waits (a *tls.Conn's writes a
// close_notify, which waits for room when its peer does not read) is
// woken as the copies are when the relay ends. A *tls.Conn (any end
// with a Handshake method) refuses CloseWrite before its handshake is
// complete: an EOF that comes first (a peer that sent nothing) is
// passed on once the handshake, which the other direction's Read runs,
// is done, and a handshake that fails ends the relay with its error.
//
// When either direction fails (a reset peer, a closed end), ctx ends, the
// Engine is closed, or a RelayOption's timeout passes, both directions
// are ended. As for CopyAsync, waits are woken by setting deadlines in
// the past on a and b, where they have deadlines, and the deadlines are
// cleared when the relay returns: deadlines the caller set before the
// relay do not survive it. An end without deadlines cannot be woken, and
// RelayWith returns once its blocked Read or Write does.
//
// RelayWith never closes a or b (nor calls CloseRead on them): when it
// returns it has stopped using them, and closing them is the caller's.
//
// The counts are the bytes each destination received, also when err is
// not nil. err is nil when both directions ended with EOF; otherwise it is
// the first error that ended the relay (but for two that yield to the
// reset the other direction met: an ENOTCONN of a CloseWrite, and the
// EOF a TCP connection, or a *tls.Conn reading one, reports after the
// other direction's write took its reset, which is not passed on and
// fails the relay matching ECONNRESET; an end that hides its connection,
// with neither SyscallConn nor NetConn, cannot be checked so, and its
// EOF is passed on as io.Copy's would be), saying which direction met it:
// errors.Is(err, ctx.Err()) (and ctx's cause) when ctx ended, an error
// wrapping ErrClosed when the Engine was closed, os.ErrDeadlineExceeded
// for RelayIdleTimeout and RelayHalfCloseTimeout, the end's own error
// otherwise (errors.Is(err, syscall.ECONNRESET) for a reset peer, or
// syscall.EPIPE where the kernel reports the reset so: for a peer that
// had half-closed before it reset, and to a write after a read reported
// the reset). A nil end, a typed nil (such as (*net.TCPConn)(nil)), or
// the same value as both a and b fail at once with an error wrapping
// os.ErrInvalid, and on Linux so do two values of one socket, pipe or
// regular file (the same device and inode, and for sockets the same
// SO_COOKIE) where both expose their descriptor (syscall.Conn): a
// *net.TCPConn and the *os.File its File method returns, or two
// net.FileConn of one socket's duplicates. Relayed
// to itself, a socket or pipe would read its own output, and each
// direction would clear the deadlines that wake the other. Values that
// hide their descriptor (a wrapper, a *tls.Conn) are not compared, nor
// are devices (terminals opened from /dev/ptmx share its inode). A nil
// ctx means context.Background().
//
// A panic of a's or b's Read, Write or CloseWrite ends the relay, both
// directions, and once both have returned RelayWith panics with the same
// value in the calling goroutine, the engine left as if it had returned.
func (e *Engine) RelayWith(ctx context.Context, a, b io.ReadWriter, opts ...RelayOption) (aToB, bToA int64, err error) {
	if err := checkRelayEnds(a, b); err != nil {
		return 0, 0, err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if ctx.Err() != nil {
		return 0, 0, ctxerr.Wrap("pipes: relay not started", ctx, nil)
	}
	// The options (the caller's code) run before the relay is counted
	// in flight: one that panics leaves nothing for Close to wait for.
	r := &relay{e: e}
	for _, o := range opts {
		if o != nil {
			o(&r.cfg)
		}
	}
	if err := e.begin(); err != nil {
		return 0, 0, fmt.Errorf("pipes: relay: %w", err)
	}
	if err := e.begin(); err != nil {
		e.end()
		return 0, 0, fmt.Errorf("pipes: relay: %w", err)
	}
	for dir := range r.meters {
		r.meters[dir].engine = e.stats.bytes.stripe()
		r.meters[dir].also = r.cfg.progress[dir]
		r.meters[dir].live = true
	}
	r.bind(e, ctx)
	r.startIdleTimer()

	r.other.Add(1)
	go r.runOther(b, a)
	// Deferred, so that it also runs when the caller's direction calls
	// runtime.Goexit (guard has ended the relay then).
	defer func() {
		e.end()
		r.other.Wait()
		aToB, err = r.delivered[dirAToB], r.stop()
		r.unbind()
		for _, p := range []any{r.panics[dirBToA], r.panics[dirAToB]} {
			if p != nil {
				panic(p)
			}
		}
	}()
	r.panics[dirBToA] = r.guard(dirBToA, a, b, &r.delivered[dirBToA])
	return 0, r.delivered[dirBToA], nil // aToB and err: the deferred join's
}

// runOther runs direction a->b, from a to b, in a goroutine of its own.
func (r *relay) runOther(b, a io.ReadWriter) {
	defer r.other.Done()
	defer r.e.end()
	r.panics[dirAToB] = r.guard(dirAToB, b, a, &r.delivered[dirAToB])
}

// guard runs direction dir (run) and stores in *n the bytes it
// delivered. If a Read, Write or CloseWrite of the ends panics, it ends
// the relay, both directions, and returns the value, which RelayWith
// raises again in the caller's goroutine once both directions have
// returned, as io.Copy's Read or Write would panic there. If one calls
// runtime.Goexit, the relay ends with an error (errGoexit), *n is what
// reached dst before (the direction's meter), and the Goexit goes on:
// it ends the goroutine before any result of guard is assigned.
func (r *relay) guard(dir int, dst io.Writer, src io.Reader, n *int64) (p any) {
	returned := false
	defer func() {
		switch p = recover(); {
		case p != nil:
			r.finish(dir, fmt.Errorf("panicked: %v", p))
		case !returned:
			*n = r.meters[dir].n.Load()
			r.finish(dir, errGoexit)
		}
	}()
	*n = r.run(dir, dst, src)
	returned = true
	return nil
}

// relay is the state two directions of one RelayWith share.
type relay struct {
	e   *Engine
	cfg relayConfig
	// tie's ctx ends both directions: their copies run on it, and
	// tie.end(err) ends the relay.
	tie

	// Each direction's result, read once both have returned: the bytes
	// it delivered, and what a Read, Write or CloseWrite panicked with.
	// other is done once direction a->b, in its own goroutine, is.
	delivered [2]int64
	panics    [2]any
	other     sync.WaitGroup
	meters    [2]meter // bytes delivered by each direction, read by the idle timer

	mu        sync.Mutex
	err       error   // the error the relay reports (see failLocked)
	first     error   // the first error recorded (r.ctx's cause, unless ctx or the engine ended first)
	eofs      int     // directions that ended with EOF, passed on
	done      [2]bool // which those are
	eof       [2]bool // directions that reached EOF, before their CloseWrite
	stopped   bool    // both directions returned: timers do nothing
	idleTimer *time.Timer
	idleSeen  int64     // both meters' total at the last change seen
	idleSince time.Time // when that change was seen
	halfTimer *time.Timer
}

// run copies one direction, src to dst, and passes its EOF on to dst.
// Its meter counts live (see meter.live): src and dst are handed to the
// engine as they are, so that a userspace copy sees their descriptors
// and wakes waits on those in blocking mode as CopyContext does.
func (r *relay) run(dir int, dst io.Writer, src io.Reader) int64 {
	if r.cfg.beforeCopy != nil {
		r.cfg.beforeCopy(dir)
	}
	n, err := r.e.copy(&r.lifetime, dst, src, &r.meters[dir])
	err = r.e.closedErr(r.ctx, err)
	if err == nil {
		// The copy returned nil at EOF of src, and only once every byte
		// it read has reached dst: the kernel paths drain their
		// intermediate pipe before they look at the source again, and
		// return at EOF with the pipe empty; the userspace path returns
		// after its last Write. So CloseWrite never overtakes bytes
		// still in flight: dst's peer reads EOF after all of them.
		err = r.reachedEOF(dir, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil && !r.failed() {
			err = r.closeWrite(dir, dst, cw)
		}
	}
	if r.cfg.beforeFinish != nil {
		r.cfg.beforeFinish(dir, err)
	}
	r.finish(dir, err)
	return n
}

// failed reports whether the relay has failed: an EOF read then is not
// passed on (see resetErr).
func (r *relay) failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err != nil
}

// closeWrite passes EOF on with dst's CloseWrite. That may wait (a
// *tls.Conn writes its close_notify, which waits for room when dst's
// peer does not read): the wait is woken, like the copies', by a
// deadline in the past on dst when the relay ends. Go's TCP and unix
// sockets shut down their write side (shutdown(2)), which never waits:
// no wake is armed for those.
func (r *relay) closeWrite(dir int, dst io.Writer, cw interface{ CloseWrite() error }) error {
	var err error
	switch dst.(type) {
	case *net.TCPConn, *net.UnixConn:
		err = cw.CloseWrite()
	default:
		err = func() error {
			defer fd.OnDone(r.ctx, dst, nil)() // also if CloseWrite or Handshake panics
			if err := r.awaitHandshake(dir, dst); err != nil {
				return err
			}
			return cw.CloseWrite()
		}()
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ENOTCONN) {
		if rerr := r.resetErr(dir, dst, err); rerr != nil {
			return rerr
		}
	}
	if r.ctx.Err() != nil {
		err = r.e.closedErr(r.ctx, ctxerr.Wrap("pipes", r.ctx, err))
	}
	return fmt.Errorf("passing EOF on with CloseWrite: %w", err)
}

// handshaker is an end that must complete a handshake before it can
// pass EOF on: a *tls.Conn, whose CloseWrite fails before.
type handshaker interface{ Handshake() error }

// awaitHandshake waits, for direction dir's CloseWrite of dst, until
// dst's handshake is complete (a *tls.Conn refuses CloseWrite before): the
// EOF of a source that ended before it, a peer that sent nothing, waits
// for it. The other direction's Read of dst runs the handshake. For a
// *tls.Conn this call never runs it: its reads would be woken by no
// deadline of the relay once the other direction had returned, or had
// armed and cleared its own without reading (a relay cancelled as it
// started). It returns nil at once for an end with no handshake, the
// handshake's error where it failed, and an error once the relay ends.
func (r *relay) awaitHandshake(dir int, dst io.Writer) error {
	h, ok := dst.(handshaker)
	if !ok {
		return nil
	}
	c, ok := dst.(tlsState)
	if !ok {
		// Another end with a handshake, which cannot tell one done
		// without running it.
		if err := r.ctx.Err(); err != nil {
			return err
		}
		return h.Handshake()
	}
	for wait := time.Millisecond; ; wait = min(2*wait, maxHandshakePoll) {
		// ConnectionState waits while a handshake runs; the other
		// direction's read deadline wakes that handshake when the
		// relay ends.
		if c.ConnectionState().HandshakeComplete {
			return nil
		}
		if err := r.ctx.Err(); err != nil {
			return err
		}
		if r.passedEOF(1 - dir) {
			// The other direction's Read ran the handshake, which
			// failed with an EOF (taken for the end of its source; any
			// other error has ended the relay): Handshake returns the
			// error the connection kept.
			return h.Handshake()
		}
		t := time.NewTimer(wait)
		select {
		case <-r.ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// tlsState is an end that tells whether its TLS handshake is complete
// without running it: a *tls.Conn, or a type that embeds one.
type tlsState interface {
	ConnectionState() tls.ConnectionState
}

// passedEOF reports whether direction dir ended at EOF and passed it on.
func (r *relay) passedEOF(dir int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done[dir]
}

// maxHandshakePoll bounds the wait between two looks at a handshake the
// other direction of a relay runs.
const maxHandshakePoll = 20 * time.Millisecond

// resetErr is the error of direction dir's CloseWrite of dst that
// failed with err, ENOTCONN, where dst's connection was reset. shutdown(2)
// of a TCP socket answers ENOTCONN once its connection is gone, and the
// socket then holds why (SO_ERROR) until a read or write reports it:
// ECONNRESET for a reset, EPIPE for a reset after the peer had
// half-closed, ETIMEDOUT. resetErr reads it and, if there is one, ends
// the relay with it, in one critical section: the read clears it, so the
// other direction, reading dst, then reads EOF instead, and checks
// (failed) before it passes that EOF on, so that a reset never reaches
// the other peer as a clean end. nil means no error was pending: dst was
// not connected, or a read of it has reported the error already (the
// other direction has it). A unix stream socket's shutdown succeeds
// whatever its peer did, never reaching here.
func (r *relay) resetErr(dir int, dst io.Writer, err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	serr := socketError(dst)
	if serr == nil {
		return nil
	}
	err = fmt.Errorf("passing EOF on with CloseWrite: %v; the socket's error: %w", err, serr)
	r.failLocked(dir, err)
	return err
}

// reachedEOF records that direction dir reached EOF of src: the first to
// does starts the half-close timer, which bounds the wait for the other
// direction and for both CloseWrites. It returns errAborted, and the
// EOF must not be passed on, where src is a TCP socket that a reset or
// a timeout closed while the other direction still writes to it (it
// has not reached EOF, so it has not shut src down for writing): that
// direction's write took the socket's error, and left this read EOF.
// The check is made under the lock that the other direction's EOF is
// recorded under before its CloseWrite, so that a clean close after
// that CloseWrite (which ends in the same state) is never taken for one.
func (r *relay) reachedEOF(dir int, src io.Reader) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.eof[dir] = true
	if !r.eof[1-dir] && tcpAborted(src) {
		return errAborted
	}
	if r.halfTimer != nil || r.err != nil || r.cfg.halfClose <= 0 {
		return nil
	}
	d := r.cfg.halfClose
	r.halfTimer = time.AfterFunc(d, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.stopped || r.eofs == 2 {
			return
		}
		late := 1 - dir
		if r.done[late] {
			late = dir // the other is done: dir's own CloseWrite waits
		}
		r.failLocked(noDir, fmt.Errorf("pipes: relay %s: not done %v after %s reached EOF: %w",
			relayDirNames[late], d, relayDirNames[dir], os.ErrDeadlineExceeded))
	})
	return nil
}

// errAborted is the error of a relay direction that read EOF from a TCP
// connection a reset or a timeout had closed, which the other
// direction's write reported first (see reachedEOF). It matches
// ECONNRESET; the other direction's own error replaces it when that
// direction records it (failLocked).
var errAborted = fmt.Errorf("EOF from a connection that was reset: %w", syscall.ECONNRESET)

// finish records how direction dir ended: an error ends the relay; nil
// is EOF passed on.
func (r *relay) finish(dir int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.failLocked(dir, err)
		return
	}
	r.eofs++
	r.done[dir] = true
}

// dirErr is err, met by direction dir.
func dirErr(dir int, err error) error {
	return fmt.Errorf("pipes: relay %s: %w", relayDirNames[dir], err)
}

// failLocked records err, met by direction dir (noDir: by the relay as
// a whole), if it is the first, or a reset that explains the ENOTCONN
// or the aborted EOF recorded first, and ends both directions.
// shutdown(2) answers ENOTCONN on a TCP connection that was reset, and
// the socket holds the reset only until a read reports it: where the
// other direction's read took it and has not recorded it yet when
// CloseWrite fails (resetErr finds nothing pending), the reset comes
// second. Only what err met itself counts: an error that ended because
// the relay did carries the relay's first error as its context's cause
// (and the cancellation), which must not make it yield, nor replace the
// error it carries; the reset that replaces is recorded without them.
func (r *relay) failLocked(dir int, err error) {
	met := err
	if dir != noDir {
		err = dirErr(dir, err)
	}
	switch {
	case r.err == nil:
		r.err, r.first = err, err
	case dir != noDir && yields(r.err, nil) && !yields(err, r.first):
		for _, target := range []error{syscall.ECONNRESET, syscall.EPIPE, syscall.ETIMEDOUT} {
			if own := ownPart(met, r.first, target); own != nil {
				r.err = dirErr(dir, own)
				break
			}
		}
	}
	r.end(err)
}

// noDir is failLocked's direction for an error of the relay as a whole.
const noDir = -1

// ownPart is the outermost error err wraps that matches target and
// carries neither skip (see isOwn) nor a context's error: what an
// operation met itself, without the cancellation that ended it after.
// nil if there is none.
func ownPart(err, skip, target error) error {
	if !isOwn(err, skip, target) {
		return nil
	}
	if !isOwn(err, nil, skip) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return ownPart(u.Unwrap(), skip, target)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if p := ownPart(e, skip, target); p != nil {
				return p
			}
		}
	}
	return nil
}

// yields reports whether err, recorded first, gives way to the reset (or
// timeout) the other direction met: a CloseWrite's ENOTCONN, and the
// EOF of an aborted connection (errAborted). What err carries as skip
// is not looked at (see isOwn).
func yields(err, skip error) bool {
	return isOwn(err, skip, errAborted) ||
		isOwn(err, skip, syscall.ENOTCONN) && !isReset(err, skip)
}

// isReset reports whether err says the peer reset the connection:
// ECONNRESET, or EPIPE where the kernel reports the reset so. What err
// carries as skip is not looked at (see isOwn).
func isReset(err, skip error) bool {
	return isOwn(err, skip, syscall.ECONNRESET) || isOwn(err, skip, syscall.EPIPE)
}

// isOwn is errors.Is(err, target), but for the errors err wraps under
// skip, which it does not look into. skip is nil (look at every error)
// or an error of the relay's failLocked, a pointer: comparing it with
// any error never panics.
func isOwn(err, skip, target error) bool {
	for err != nil && err != skip {
		if err == target {
			return true
		}
		if x, ok := err.(interface{ Is(error) bool }); ok && x.Is(target) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if isOwn(e, skip, target) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}

// startIdleTimer arms RelayIdleTimeout's timer, if the relay has one.
func (r *relay) startIdleTimer() {
	if r.cfg.idle <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.idleSince = time.Now()
	r.idleTimer = time.AfterFunc(r.idlePeriod(), r.checkIdle)
}

// idlePeriod is how often the idle timer samples the meters.
func (r *relay) idlePeriod() time.Duration {
	return max(r.cfg.idle/4, min(r.cfg.idle, time.Millisecond))
}

// checkIdle ends the relay if no byte moved in either direction for
// RelayIdleTimeout; else it checks again later.
func (r *relay) checkIdle() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped || r.err != nil {
		return
	}
	now := time.Now()
	total := r.meters[dirAToB].n.Load() + r.meters[dirBToA].n.Load()
	next := r.idlePeriod()
	if total != r.idleSeen {
		r.idleSeen, r.idleSince = total, now
	} else if idle := now.Sub(r.idleSince); idle >= r.cfg.idle {
		r.failLocked(noDir, fmt.Errorf("pipes: relay: no byte in either direction for %v: %w",
			r.cfg.idle, os.ErrDeadlineExceeded))
		return
	} else {
		next = min(next, r.cfg.idle-idle)
	}
	r.idleTimer.Reset(next)
}

// stop disarms the timers once both directions have returned and gives
// the relay's error.
func (r *relay) stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	if r.idleTimer != nil {
		r.idleTimer.Stop()
	}
	if r.halfTimer != nil {
		r.halfTimer.Stop()
	}
	return r.err
}

// checkRelayEnds rejects ends a relay cannot use.
func checkRelayEnds(a, b io.ReadWriter) error {
	switch {
	case isNil(a) && isNil(b):
		return fmt.Errorf("pipes: relay: a and b are nil: %w", os.ErrInvalid)
	case isNil(a):
		return fmt.Errorf("pipes: relay: a is nil (%T): %w", a, os.ErrInvalid)
	case isNil(b):
		return fmt.Errorf("pipes: relay: b is nil (%T): %w", b, os.ErrInvalid)
	case sameValue(a, b):
		return fmt.Errorf("pipes: relay: a and b are the same %T: %w", a, os.ErrInvalid)
	}
	if kind, same := sameFile(a, b); same {
		return fmt.Errorf("pipes: relay: a (%T) and b (%T) are the same %s: %w", a, b, kind, os.ErrInvalid)
	}
	return nil
}

// sameValue reports whether a == b, without the panic of == on values
// that are not comparable (a struct holding a slice, say).
func sameValue(a, b any) (same bool) {
	if reflect.TypeOf(a) != reflect.TypeOf(b) || !reflect.TypeOf(a).Comparable() {
		return false
	}
	defer func() {
		if recover() != nil {
			same = false // comparable type, incomparable dynamic field
		}
	}()
	return a == b
}
