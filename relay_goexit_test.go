package pipes

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/pipes-go/pipes/internal/fanout"
)

// goexitLater is a relay end that reads as empty (EOF) and takes the
// writes given to it until it has taken limit bytes; the Write after
// that calls runtime.Goexit. took counts the bytes it took.
type goexitLater struct {
	limit int64
	took  *atomic.Int64
}

func (g goexitLater) Read([]byte) (int, error) { return 0, io.EOF }

func (g goexitLater) Write(b []byte) (int, error) {
	if g.took.Load() >= g.limit {
		runtime.Goexit()
	}
	g.took.Add(int64(len(b)))
	return len(b), nil
}

// goexitAfterRead is a relay end whose first Read yields data and whose
// next Read calls runtime.Goexit; what it is given to write it drops.
type goexitAfterRead struct {
	data []byte
	read *atomic.Bool
}

func (g goexitAfterRead) Read(b []byte) (int, error) {
	if g.read.Swap(true) {
		runtime.Goexit()
	}
	return copy(b, g.data), nil
}

func (g goexitAfterRead) Write(b []byte) (int, error) { return len(b), nil }

// TestReview15RelayGoexitCounts: a Read or Write of the direction a relay
// runs in its own goroutine (a -> b) that calls runtime.Goexit after
// bytes reached b fails the relay with fanout.ErrGoexit, and aToB still
// counts those bytes, as RelayWith promises "also when err is not nil".
// The count was lost with the goroutine: aToB was 0.
func TestReview15RelayGoexitCounts(t *testing.T) {
	for _, tc := range []struct {
		name string
		ends func() (a, b io.ReadWriter, delivered func() int64)
	}{
		{"Write", func() (io.ReadWriter, io.ReadWriter, func() int64) {
			took := new(atomic.Int64)
			return struct {
				io.Reader
				io.Writer
			}{bytes.NewReader(make([]byte, 1<<20)), io.Discard}, goexitLater{limit: 1, took: took}, took.Load
		}},
		{"Read", func() (io.ReadWriter, io.ReadWriter, func() int64) {
			took := new(atomic.Int64)
			a := goexitAfterRead{data: []byte("hello"), read: new(atomic.Bool)}
			return a, goexitLater{limit: 1 << 20, took: took}, took.Load
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := NewEngine()
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			a, b, delivered := tc.ends()
			aToB, bToA, err := e.RelayWith(context.Background(), a, b)
			if !errors.Is(err, fanout.ErrGoexit) {
				t.Errorf("err = %v, want fanout.ErrGoexit", err)
			}
			if want := delivered(); want == 0 || aToB != want || bToA != 0 {
				t.Errorf("aToB, bToA = %d, %d; want %d (what b took before the Goexit), 0", aToB, bToA, want)
			}
		})
	}
}
