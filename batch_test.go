//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestCopyBatch copies many pairs of mixed kinds in one call and checks
// every destination by hash.
func TestCopyBatch(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		t.Run(ec.name, func(t *testing.T) {
			e := newTestEngine(t, ec.opts...)
			n := 64
			if raceEnabled {
				n = 32
			}
			var pairs []Pair
			var datas [][]byte
			var sinks []sink
			var srcs []source
			for i := range n {
				size := 1<<20 + i*4099
				data := fdtest.Random(size)
				sk := sourceKinds[i%len(sourceKinds)]
				dk := sinkKinds[(i/len(sourceKinds))%len(sinkKinds)]
				if i%2 == 0 {
					sk = sourceKinds[0] // file: the ring's case
				}
				src := sk.make(t, data)
				dst := dk.make(t)
				pairs = append(pairs, Pair{Dst: dst.w, Src: src.r})
				datas, sinks, srcs = append(datas, data), append(sinks, dst), append(srcs, src)
			}
			before := e.Stats()
			res := e.CopyBatch(fanTimeout(t, time.Minute), pairs)
			after := e.Stats()
			for i, r := range res {
				srcs[i].close()
				if r.Err != nil || r.Written != int64(len(datas[i])) {
					t.Errorf("pair %d: %+v, want %d bytes", i, r, len(datas[i]))
				}
				if got, sum := sinks[i].finish(); got != int64(len(datas[i])) || sum != sha256.Sum256(datas[i]) {
					t.Errorf("pair %d: destination got %d bytes, want %d", i, got, len(datas[i]))
				}
			}
			t.Logf("%s: %d copies, SQEs %d, io_uring_enter %d", e.Backend(), after.Copies-before.Copies, after.SQEs-before.SQEs, after.Enters-before.Enters)
		})
	}
}

// TestCopyBatchBadInput: nil pairs fail alone; an empty batch is empty.
func TestCopyBatchBadInput(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	if res := e.CopyBatch(context.Background(), nil); len(res) != 0 {
		t.Errorf("empty batch: %v", res)
	}
	var buf bytes.Buffer
	var nilFile *os.File
	var nilPipe *PipeWriter
	res := e.CopyBatch(context.Background(), []Pair{
		{Dst: nil, Src: strings.NewReader("a")},
		{Dst: io.Discard, Src: nil},
		{Dst: nilPipe, Src: strings.NewReader("a")},
		{Dst: io.Discard, Src: nilFile},
		{Dst: &buf, Src: strings.NewReader("hello")},
	})
	for i := range 4 {
		if res[i].Err == nil {
			t.Errorf("pair %d: no error", i)
		}
	}
	if res[4].Err != nil || res[4].Written != 5 || buf.String() != "hello" {
		t.Errorf("good pair: %+v, %q", res[4], buf.String())
	}
}

// TestCopyBatchCancel: cancelling stops every copy; each result wraps
// context.Canceled.
func TestCopyBatchCancel(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	var pairs []Pair
	for i := range 8 {
		a, b := tcpPair(t)
		defer a.Close()
		defer b.Close()
		go b.Write([]byte(fmt.Sprint("pair ", i))) // then idle, no EOF
		dst := sinkKinds[4].make(t)                // unix
		pairs = append(pairs, Pair{Dst: dst.w, Src: a})
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	for i, r := range e.CopyBatch(ctx, pairs) {
		if !errors.Is(r.Err, context.Canceled) {
			t.Errorf("pair %d: %+v; want context.Canceled", i, r)
		}
	}
}

// TestAdv20bCopyBatchOdd runs one CopyBatch of every odd source into
// every destination kind and wants from each pair what io.Copy gives it
// alone: one pair failing must not change another's outcome.
func TestAdv20bCopyBatchOdd(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		t.Run(ec.name, func(t *testing.T) {
			type want struct {
				n   int64
				err error
				got []byte
			}
			var pairs []Pair
			var wants []want
			var fins []func() []byte
			var names []string
			for _, src := range advOddSources() {
				for _, sk := range advSinks {
					w, finish := advSink(t, sk)
					n, err := io.Copy(w, src.make(t).(io.Reader))
					wants = append(wants, want{n, err, finish()})
					w, finish = advSink(t, sk)
					pairs = append(pairs, Pair{Dst: w, Src: src.make(t).(io.Reader)})
					fins = append(fins, finish)
					names = append(names, src.name+"->"+sk)
				}
			}
			res := e.CopyBatch(context.Background(), pairs)
			for i, r := range res {
				got, w := fins[i](), wants[i]
				if r.Written != w.n || !sameErr(r.Err, w.err) || !bytes.Equal(got, w.got) {
					t.Errorf("%s: CopyBatch = %d, %v (got %q); io.Copy = %d, %v (%q)",
						names[i], r.Written, r.Err, trunc(got), w.n, w.err, trunc(w.got))
				}
			}
		})
	}
}
