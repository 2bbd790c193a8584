package pipes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/pipes-go/pipes/internal/ctxerr"
)

// errBadLimiter is the error of a copy paced by a Limiter that NewLimiter
// did not make: nil, or the zero Limiter, which has no rate.
var errBadLimiter = errors.New("pipes: rate limit: Limiter not made by NewLimiter")

// Limiter is a token bucket of bytes: a bandwidth limit that copies keep
// on their kernel path. A copy whose source is wrapped by RateLimit asks
// the Limiter, before each splice(2) or sendfile(2) from the source, how
// many bytes it may move, and sleeps (holding no descriptor and no pipe)
// until it may move some. One Limiter given to many copies limits their
// sum; give each copy its own for a per-copy limit. A Limiter is safe for
// concurrent use. Only NewLimiter makes a Limiter: a copy paced by the
// zero Limiter, or by a nil one, fails before it moves a byte.
//
// The bucket holds at most burst bytes, and fills at the rate. A copy
// waits until the bucket is three-quarters full (or holds what the copy
// still has to move) and takes all it holds: it wakes about every
// burst/rate, as few wake-ups as the limit allows (smaller grants cost
// more CPU per byte: docs/benchmarks.md, "Rate limits"), and the last
// quarter absorbs a late timer, which would otherwise overflow the bucket
// and lose the bytes it earned meanwhile.
//
// Copies sharing a Limiter are granted bytes in the order they asked:
// one waiting for a large grant is not passed over by sharers asking for
// less (a paced Read with a small buffer, a copy of a short range), which
// would otherwise take the bucket's bytes as soon as it held their
// little, never letting it fill to the large grant.
type Limiter struct {
	rate    float64 // bytes per second
	burst   float64
	quantum int // the bytes a wait is for: 3/4 of burst

	// turn is held by the one Take that may take from the bucket, and
	// waits for it to fill; the other Takes queue for it in order.
	turn chan struct{}

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// NewLimiter returns a Limiter of bytesPerSecond with a bucket of burst
// bytes; burst <= 0 means a tenth of a second's worth, at least 64 KiB.
// A burst is raised to at least 20 ms' worth: a smaller bucket refills
// faster than timers fire on a busy machine, and the limit would not be
// reached. It panics if bytesPerSecond <= 0. The bucket starts full.
func NewLimiter(bytesPerSecond int64, burst int) *Limiter {
	if bytesPerSecond <= 0 {
		panic(fmt.Sprintf("pipes: NewLimiter: rate %d <= 0", bytesPerSecond))
	}
	if burst <= 0 {
		burst = max(int(bytesPerSecond/10), 64<<10)
	}
	burst = max(burst, int(bytesPerSecond/50))
	return &Limiter{
		rate:    float64(bytesPerSecond),
		burst:   float64(burst),
		quantum: max(burst-burst/4, 1),
		turn:    make(chan struct{}, 1),
		tokens:  float64(burst),
		last:    time.Now(),
	}
}

// Take grants between 1 and max bytes (max > 0), taking them from the
// bucket: it waits until the bucket holds three-quarters of its burst,
// or max if that is less, and grants up to max of what it holds. It
// fails with an error wrapping ctx.Err() (and the context's cause) if ctx
// ends first, and then takes nothing. Concurrent Takes are served one at
// a time, in the order they began waiting. Bytes granted and not moved
// go back with Refund. A Limiter that NewLimiter did not make (nil, or
// the zero Limiter) grants nothing and fails at once.
func (l *Limiter) Take(ctx context.Context, max int) (int, error) {
	if !l.valid() {
		return 0, errBadLimiter
	}
	if max <= 0 {
		return 0, nil
	}
	// Go's channels queue blocked senders in order.
	select {
	case l.turn <- struct{}{}:
		defer func() { <-l.turn }()
	case <-ctx.Done():
		return 0, ctxerr.Wrap("pipes: rate limit", ctx, nil)
	}
	if ctx.Err() != nil {
		// Ended before the turn came, or before the call: select took
		// the turn at random, and a bucket with bytes would grant them.
		return 0, ctxerr.Wrap("pipes: rate limit", ctx, nil)
	}
	want := min(max, l.quantum)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		l.mu.Lock()
		l.refill(time.Now())
		if l.tokens >= float64(want) {
			// int(l.tokens) only below max: a bucket of up to
			// math.MaxInt bytes holds more than an int converts.
			n := max
			if l.tokens < float64(max) {
				n = int(l.tokens)
			}
			l.tokens -= float64(n)
			l.mu.Unlock()
			return n, nil
		}
		wait := refillWait(float64(want)-l.tokens, l.rate)
		l.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			return 0, ctxerr.Wrap("pipes: rate limit", ctx, nil)
		}
	}
}

// refillWait is how long a bucket filling at rate bytes a second takes
// to gain need more bytes. A wait beyond time.Duration's range (centuries:
// a huge burst at a tiny rate) is capped at its largest value, which a
// float conversion would otherwise turn negative, and a timer of it fire
// at once: Take would spin instead of waiting.
func refillWait(need, rate float64) time.Duration {
	w := need / rate * float64(time.Second)
	if w >= math.MaxInt64 { // float64(math.MaxInt64) is 2^63, out of range
		return math.MaxInt64
	}
	return time.Duration(w)
}

// Refund puts back n bytes that Take granted and the copy did not move.
func (l *Limiter) Refund(n int) {
	if n <= 0 || !l.valid() {
		return
	}
	l.mu.Lock()
	l.refill(time.Now())
	l.tokens = min(l.tokens+float64(n), l.burst)
	l.mu.Unlock()
}

// valid reports whether l was made by NewLimiter: the zero Limiter has
// no rate, and would grant 0 bytes without waiting.
func (l *Limiter) valid() bool {
	return l != nil && l.rate > 0 && l.quantum > 0
}

// refill adds the bytes the rate earned since the last refill.
func (l *Limiter) refill(now time.Time) {
	if d := now.Sub(l.last); d > 0 {
		l.tokens = min(l.tokens+d.Seconds()*l.rate, l.burst)
		l.last = now
	}
}

// RateLimitedReader reads from R at most as fast as L allows. Copy,
// CopyAsync, CopyContext and the Engine's methods recognise it and pace
// the kernel path by L (as they honour *io.LimitedReader), so the bytes
// still move with splice(2) or sendfile(2); anything else reading it
// through Read is paced too. RateLimit builds one.
type RateLimitedReader struct {
	R io.Reader
	L *Limiter
}

// RateLimit returns a reader of r that L paces; see RateLimitedReader.
func RateLimit(r io.Reader, l *Limiter) *RateLimitedReader {
	return &RateLimitedReader{R: r, L: l}
}

// Read reads at most what L grants now, waiting for a grant first.
func (r *RateLimitedReader) Read(p []byte) (int, error) {
	return pacedRead(context.Background(), r.R, r.L, p)
}

// pacedRead reads from r into p at most what l grants, waiting (until
// ctx ends) for a grant, and refunds what r did not fill.
func pacedRead(ctx context.Context, r io.Reader, l *Limiter, p []byte) (int, error) {
	if len(p) == 0 {
		return r.Read(p)
	}
	g, err := l.Take(ctx, len(p))
	if err != nil {
		return 0, err
	}
	n, err := readPaced(ctx, r, p[:g])
	l.Refund(g - n)
	return n, err
}

// readPaced is r.Read(p), but where r is a *RateLimitedReader, also
// inside *io.LimitedReaders, its Limiter's waits end with ctx too: limits
// nested (a copy's own around one its copies share, say), whose inner
// Read would otherwise wait for a grant with no context, and keep a
// cancelled copy waiting for the inner Limiter's turn.
func readPaced(ctx context.Context, r io.Reader, p []byte) (int, error) {
	switch x := r.(type) {
	case *RateLimitedReader:
		if x != nil {
			return pacedRead(ctx, x.R, x.L, p)
		}
	case *io.LimitedReader:
		if x != nil {
			// io.LimitedReader's Read, reading x.R with readPaced.
			if x.N <= 0 {
				return 0, io.EOF
			}
			if int64(len(p)) > x.N {
				p = p[:x.N]
			}
			n, err := readPaced(ctx, x.R, p)
			x.N -= int64(n)
			return n, err
		}
	}
	return r.Read(p)
}

// hasLimiter reports whether r is a *RateLimitedReader, or one inside
// *io.LimitedReaders: a reader whose Read may wait for a grant.
func hasLimiter(r io.Reader) bool {
	for {
		switch x := r.(type) {
		case *RateLimitedReader:
			return x != nil
		case *io.LimitedReader:
			if x == nil {
				return false
			}
			r = x.R
		default:
			return false
		}
	}
}

// pacedReader is a RateLimitedReader whose waits end with ctx: the
// userspace path of a paced copy. With no l it paces by the Limiters r
// holds (hasLimiter: ones the copy did not take off, inside two
// *io.LimitedReaders say), their waits ended by ctx too (readPaced).
type pacedReader struct {
	ctx context.Context
	r   io.Reader
	l   *Limiter // nil: r's own only
}

func (r *pacedReader) Read(p []byte) (int, error) {
	if r.l == nil {
		return readPaced(r.ctx, r.r, p)
	}
	return pacedRead(r.ctx, r.r, r.l, p)
}
