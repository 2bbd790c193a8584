//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestFanOutLimitedCancel: cancelling ctx ends a FanOut whose
// source is an *io.LimitedReader around an idle socket, on the kernel
// path as on the userspace one: the read of the source is interrupted
// through the reader it wraps, as it is without the wrapper.
func TestFanOutLimitedCancel(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	for _, dstKind := range []string{"unix", "reader"} {
		t.Run(dstKind, func(t *testing.T) {
			a, b := tcpPair(t)
			defer a.Close()
			defer b.Close()
			var ws []io.Writer
			var sinks *fanSinks
			if dstKind == "reader" {
				// No descriptor: the userspace fan-out.
				ws = []io.Writer{io.Discard, io.Discard}
			} else {
				sinks = newFanSinks(t, dstKind, 2)
				ws = sinks.ws
			}
			go b.Write([]byte("hello")) // then the source idles without EOF
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(200*time.Millisecond, cancel)
			done := make(chan []Result, 1)
			go func() { done <- e.FanOut(ctx, &io.LimitedReader{R: a, N: 1 << 20}, ws) }()
			var res []Result
			select {
			case res = <-done:
			case <-time.After(10 * time.Second):
				a.Close() // unblock the fan-out so that the test ends
				<-done
				t.Fatal("FanOut from a LimitedReader did not end when ctx was cancelled")
			}
			for i, r := range res {
				if !errors.Is(r.Err, context.Canceled) {
					t.Errorf("destination %d: %+v; want context.Canceled", i, r)
				}
			}
			if sinks != nil {
				sinks.finish()
			}
		})
	}
}

// TestCopierChurn: while a stream flows through a Copier to a
// writer that stays, writers join at random moments and some leave
// (their reader closes after a random count). Each writer receives one
// contiguous run of the stream: a joiner from some offset on, to the end
// if it stays; a leaver exactly what its reader took. The one that stays
// receives every byte.
func TestCopierChurn(t *testing.T) {
	fdtest.Check(t)
	data := copierData(6<<20 + 3)
	for _, fan := range copierFans {
		t.Run(fan.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
			src, in := ptNewPipe(t)
			stay := newCopierSinkT(t, -1)
			c, err := fan.start(context.Background(), src, stay.w)
			if err != nil {
				t.Fatal(err)
			}
			fed := make(chan struct{})
			feedRng := rand.New(rand.NewPCG(rng.Uint64(), 8))
			go func() {
				defer close(fed)
				for off := 0; off < len(data); {
					n := min(len(data)-off, 1+feedRng.IntN(200<<10))
					in.Write(data[off : off+n])
					off += n
				}
			}()
			type joiner struct {
				s     *copierSinkT
				limit int64
			}
			var joiners []joiner
			for i := 0; i < 24; i++ {
				time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
				limit := int64(-1)
				if rng.IntN(2) == 0 {
					limit = int64(rng.IntN(300 << 10))
				}
				s := newCopierSinkT(t, limit)
				if err := c.Add(s.w); err != nil {
					s.finish()
					if !errors.Is(err, ErrCopierStopped) {
						t.Errorf("Add: %v", err)
					}
					continue
				}
				joiners = append(joiners, joiner{s, limit})
			}
			<-fed
			in.Close()
			if err := c.Wait(); err != nil {
				t.Fatalf("Wait: %v", err)
			}
			checkSame(t, "staying writer", stay.finish(), data)
			received := 0
			for i, j := range joiners {
				got := j.s.finish()
				if len(got) == 0 {
					continue
				}
				received++
				off := bytes.Index(data, got[:min(len(got), 64)])
				if off < 0 || !bytes.Equal(data[off:off+min(len(got), len(data)-off)], got) {
					t.Errorf("joiner %d (limit %d): its %d bytes are not one run of the stream", i, j.limit, len(got))
					continue
				}
				switch {
				case j.limit >= 0 && int64(len(got)) != j.limit && off+len(got) != len(data):
					t.Errorf("joiner %d: received %d bytes from %d, its reader took %d", i, len(got), off, j.limit)
				case j.limit < 0 && off+len(got) != len(data):
					t.Errorf("joiner %d: received bytes %d to %d of %d, not to the end", i, off, off+len(got), len(data))
				}
			}
			t.Logf("%d of %d joiners received bytes", received, len(joiners))
		})
	}
}
