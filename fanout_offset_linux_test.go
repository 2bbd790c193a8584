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

// TestReview30FanOutCancelOffset cancels a fan-out of a file whose
// socket destinations have stopped reading: the file's offset, and the
// N of the *io.LimitedReader around it, are left after the bytes read,
// at most a buffer and a chunk past the most any destination received
// (what a teeing fan-out has read into its pipes). Sending from the
// file, they were left where the front was, up to 16 MiB past every
// byte sent.
func TestReview30FanOutCancelOffset(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	data := fdtest.Random(48 << 20)
	src := fileSource(t, data)
	defer src.close()
	f := src.r.(*os.File)
	sinks := newFanSinks(t, "tcp", 2, 0, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(500*time.Millisecond, cancel)
	lr := &io.LimitedReader{R: f, N: int64(len(data))}
	res := e.FanOut(ctx, lr, sinks.ws)
	sinks.finish()
	var most int64
	for i, r := range res {
		if !errors.Is(r.Err, context.Canceled) {
			t.Errorf("destination %d: %+v; want context.Canceled", i, r)
		}
		most = max(most, r.Written)
	}
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		t.Fatal(err)
	}
	if off != int64(len(data))-lr.N {
		t.Errorf("offset %d, N %d: N does not count the bytes read", off, lr.N)
	}
	if off < most || off-most > 2<<20 {
		t.Errorf("offset %d, the most a destination received %d: want at most 2 MiB apart", off, most)
	}
}

// TestReview30FanOutTruncated truncates the source file of a fan-out
// to sockets while no destination has reached the new end (every one
// has stopped reading): as io.Copy, and the teeing fan-out, each
// destination receives the file up to its new end and reports no
// error, and the offset is left there.
func TestReview30FanOutTruncated(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	data := fdtest.Random(64 << 20)
	const cut = 40 << 20
	src := fileSource(t, data)
	defer src.close()
	f := src.r.(*os.File)
	sinks := newFanSinks(t, "tcp", 2, 0, 1)
	time.AfterFunc(300*time.Millisecond, func() {
		if err := os.Truncate(f.Name(), cut); err != nil {
			t.Error(err)
		}
		sinks.open(0)
		sinks.open(1)
	})
	res := e.FanOut(fanTimeout(t, time.Minute), f, sinks.ws)
	sinks.finish()
	for i, r := range res {
		if r.Err != nil || r.Written != cut {
			t.Errorf("destination %d: %+v; want nil, %d bytes", i, r, cut)
			continue
		}
		sinks.check(t, i, data[:cut])
	}
	if off, err := f.Seek(0, io.SeekCurrent); err != nil || off != cut {
		t.Errorf("offset %d (%v), want %d", off, err, cut)
	}
}
