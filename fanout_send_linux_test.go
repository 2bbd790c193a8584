//go:build !pipes_portable

package pipes

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// The tests below use the default buffer and regular files into
// sockets: on the io_uring backend such a fan-out sends each destination
// its bytes from the file with sendfile(2) (internal/fanout, "sends");
// on the splice backend the same tests run the teeing fan-out.

// TestFanOutSendsStalled has one destination of four stop reading in a
// fan-out of a 48 MiB file (more than the destinations may fall apart,
// with the sockets' buffers): with FanOutEvictAfter it is evicted and
// the others receive the whole file; without, the others wait for it
// and all receive the whole file once it reads again.
func TestFanOutSendsStalled(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	data := fdtest.Random(48 << 20)
	for _, evict := range []bool{true, false} {
		t.Run(map[bool]string{true: "evict", false: "wait"}[evict], func(t *testing.T) {
			src := fileSource(t, data)
			defer src.close()
			sinks := newFanSinks(t, "tcp", 4, 1)
			var opts []FanOutOption
			if evict {
				// Long enough that a healthy reader starved by a
				// loaded machine is not evicted.
				opts = append(opts, FanOutEvictAfter(time.Second))
			} else {
				time.AfterFunc(500*time.Millisecond, func() { sinks.open(1) })
			}
			res := e.FanOut(fanTimeout(t, time.Minute), src.r, sinks.ws, opts...)
			sinks.finish()
			for i, r := range res {
				if evict && i == 1 {
					if !errors.Is(r.Err, ErrEvicted) || !errors.Is(r.Err, os.ErrDeadlineExceeded) || r.Written >= int64(len(data)) {
						t.Errorf("stalled destination: %+v; want ErrEvicted and os.ErrDeadlineExceeded", r)
					}
					if sinks.n[i] != r.Written {
						t.Errorf("stalled destination received %d bytes, Written says %d", sinks.n[i], r.Written)
					}
					continue
				}
				if r.Err != nil || r.Written != int64(len(data)) {
					t.Errorf("destination %d: %+v", i, r)
				}
				sinks.check(t, i, data)
			}
			if off, err := src.r.(*os.File).Seek(0, io.SeekCurrent); err != nil || off != int64(len(data)) {
				t.Errorf("source offset %d (%v), want %d", off, err, len(data))
			}
		})
	}
}

// TestFanOutSendsSection fans out a section of a file: from an offset,
// under an *io.LimitedReader that ends inside the file. Every destination
// receives the section, the offset is left after it and N is 0.
func TestFanOutSendsSection(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	data := fdtest.Random(12<<20 + 7)
	const off, n = 1<<20 + 3, 9<<20 + 5
	src := fileSource(t, data)
	defer src.close()
	f := src.r.(*os.File)
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	sinks := newFanSinks(t, "tcp", 3)
	lr := &io.LimitedReader{R: f, N: n}
	res := e.FanOut(fanTimeout(t, time.Minute), lr, sinks.ws)
	sinks.finish()
	for i, r := range res {
		if r.Err != nil || r.Written != n {
			t.Errorf("destination %d: %+v", i, r)
		}
		sinks.check(t, i, data[off:off+n])
	}
	if got, err := f.Seek(0, io.SeekCurrent); err != nil || got != off+n || lr.N != 0 {
		t.Errorf("offset %d (%v), N %d; want %d, 0", got, err, lr.N, off+n)
	}
}

// TestFanOutSendsEnds ends a fan-out of a file whose destinations have
// all stopped reading by cancelling it, closing the engine, and closing
// the source: every destination reports it, with what it received.
func TestFanOutSendsEnds(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(32 << 20)
	for _, end := range []string{"cancel", "close-engine", "close-source"} {
		t.Run(end, func(t *testing.T) {
			e := newTestEngine(t)
			src := fileSource(t, data)
			defer src.close()
			sinks := newFanSinks(t, "tcp", 3, 0, 1, 2)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			time.AfterFunc(300*time.Millisecond, func() {
				switch end {
				case "cancel":
					cancel()
				case "close-engine":
					e.Close()
				case "close-source":
					src.r.(*os.File).Close()
					// Nothing reads the source while the
					// destinations wait: end those waits too.
					time.AfterFunc(300*time.Millisecond, cancel)
				}
			})
			res := e.FanOut(ctx, src.r, sinks.ws)
			for i, r := range res {
				var ok bool
				switch end {
				case "cancel":
					ok = errors.Is(r.Err, context.Canceled)
				case "close-engine":
					ok = errors.Is(r.Err, ErrClosed)
				case "close-source":
					ok = errors.Is(r.Err, os.ErrClosed) || errors.Is(r.Err, context.Canceled)
				}
				if !ok || r.Written >= int64(len(data)) {
					t.Errorf("destination %d: %+v", i, r)
				}
			}
			sinks.finish()
			for i, r := range res {
				if sinks.n[i] != r.Written {
					t.Errorf("destination %d received %d bytes, Written says %d", i, sinks.n[i], r.Written)
				}
			}
		})
	}
}
