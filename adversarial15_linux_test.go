package pipes

import (
	"context"
	"crypto/sha256"
	"io"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestLimiterSharedNoStarvation: a copy waiting for a large grant of a
// shared Limiter (its quantum) is not passed over forever by sharers
// asking for small ones, which, taking whatever the bucket holds as soon
// as it holds their little, used to keep it from ever filling to the
// large copy's quantum: the large copy then moved nothing until they
// stopped. The sharers are a paced Read loop (a userspace copy: io.Copy's
// 32 KiB reads) and kernel copies of 64 KiB ranges (net/http serves a
// range with io.CopyN, an *io.LimitedReader). Each sharer stops after
// moving 16 times what the large copy moves; the large copy must finish
// first.
func TestLimiterSharedNoStarvation(t *testing.T) {
	const rate = 64 << 20
	const size = 8 << 20 // the large copy
	const bound = 16 * size
	e := newTestEngine(t)
	for _, tc := range []struct {
		name  string
		share func(ctx context.Context, l *Limiter, moved *atomic.Int64)
	}{
		{"read-32KiB", func(ctx context.Context, l *Limiter, moved *atomic.Int64) {
			r := RateLimit(endless{}, l)
			buf := make([]byte, 32<<10)
			for ctx.Err() == nil && moved.Load() < bound {
				n, _ := r.Read(buf)
				moved.Add(int64(n))
			}
		}},
		{"kernel-64KiB-ranges", func(ctx context.Context, l *Limiter, moved *atomic.Int64) {
			f := fdtest.TempFile(t, fdtest.Random(64<<10))
			a, b := unixPair(t)
			defer a.Close()
			go io.Copy(io.Discard, b)
			for ctx.Err() == nil && moved.Load() < bound {
				f.Seek(0, io.SeekStart)
				n, err := e.CopyContext(ctx, a, RateLimit(io.LimitReader(f, 64<<10), l))
				if err != nil && ctx.Err() == nil {
					t.Errorf("a 64 KiB copy: %v", err)
					return
				}
				moved.Add(n)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLimiter(rate, 0)
			ctx, cancel := context.WithCancel(context.Background())
			var moved atomic.Int64
			shared := make(chan struct{})
			go func() {
				defer close(shared)
				tc.share(ctx, l, &moved)
			}()
			defer func() { cancel(); <-shared }()
			// The sharer has emptied the bucket's first burst.
			for moved.Load() < int64(l.burst) {
				select {
				case <-shared:
					t.Fatalf("the sharer stopped after %d bytes", moved.Load())
				default:
				}
				runtime.Gosched()
			}
			data := fdtest.Random(size)
			src := fdtest.TempFile(t, data)
			a, b := unixPair(t)
			got := drainInto(t, a, b)
			n, err := e.Copy(a, RateLimit(src, l))
			sharerMoved := moved.Load()
			cancel()
			<-shared
			if m, sum := got.finish(); n != size || err != nil || m != size || sum != sha256.Sum256(data) {
				t.Fatalf("copy = (%d, %v), %d bytes received", n, err, m)
			}
			if sharerMoved >= bound {
				t.Errorf("the copy of %d MiB waited until its sharer of the Limiter had moved %d MiB and stopped", size>>20, sharerMoved>>20)
			}
		})
	}
}
