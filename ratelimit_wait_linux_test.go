//go:build !pipes_portable

package pipes

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
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

// TestPacedCopyWaitsHoldingNoPipe: a paced copy that has moved its grant
// and sleeps until its Limiter grants more holds no pool pipe, as the
// Limiter's doc and the pipe loop's invariant (a pooled pipe is held only
// while bytes move through it) say: it used to keep its empty pipe
// through the sleep, so that with WithMaxPipes(1) every other copy went
// through a userspace buffer for as long as the paced copy ran. The
// Limiter here grants its first burst and then nothing for hours.
func TestPacedCopyWaitsHoldingNoPipe(t *testing.T) {
	const burst = 64 << 10
	for _, tc := range []struct {
		name string
		ends func(t *testing.T) (dst io.Writer, src io.Reader)
	}{
		{"tcp->tcp", func(t *testing.T) (io.Writer, io.Reader) {
			srcPeer, src := tcpPair(t)
			dst, dstPeer := tcpPair(t)
			t.Cleanup(func() { srcPeer.Close(); src.Close(); dst.Close(); dstPeer.Close() })
			go srcPeer.Write(make([]byte, 4*burst))
			go io.Copy(io.Discard, dstPeer)
			return dst, src
		}},
		{"unix->file", func(t *testing.T) (io.Writer, io.Reader) {
			srcPeer, src := unixPair(t)
			t.Cleanup(func() { srcPeer.Close(); src.Close() })
			go srcPeer.Write(make([]byte, 4*burst))
			return fdtest.TempFile(t, nil), src
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t, WithMaxPipes(1))
			pool := e.sys.pool
			l := NewLimiter(1, burst) // full at first, then 1 B/s
			dst, src := tc.ends(t)
			if f, ok := dst.(*os.File); ok {
				// Writable, for the copy into it.
				g, err := os.OpenFile(f.Name(), os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { g.Close() })
				dst = g
			}
			ctx, cancel := context.WithCancel(context.Background())
			f := e.CopyAsync(ctx, dst, RateLimit(src, l))
			defer func() { cancel(); f.Wait() }()
			// The copy has moved its first grant and waits for the
			// next: it holds the Limiter's turn, in Take.
			for f.Written() < burst || len(l.turn) == 0 {
				select {
				case <-f.Done():
					n, err := f.Wait()
					t.Fatalf("the paced copy ended: (%d, %v)", n, err)
				default:
				}
				runtime.Gosched()
			}
			if st := pool.Stats(); st.InUse != 0 {
				t.Errorf("a copy waiting for its Limiter holds %d pool pipes (WithMaxPipes(1))", st.InUse)
			}
		})
	}
}
