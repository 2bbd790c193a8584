//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fanout"
	"github.com/pipes-go/pipes/internal/fdtest"
)

// goexitReaderFrom is goexitLater with a ReadFrom, as io.Copy's buffer
// loop into its Write: a relay direction into it is handed to it (a
// *bufio.Writer's, a *net.TCPConn's fallback).
type goexitReaderFrom struct{ goexitLater }

func (g goexitReaderFrom) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{g.goexitLater}, r)
}

// TestReview26RelayGoexitReadFromCounts is TestReview15RelayGoexitCounts
// with a destination that has a ReadFrom (kept by meteredReaderFrom since
// 9d001f9): its Write calls runtime.Goexit once it has taken a buffer.
// aToB must be what reached b, as RelayWith promises; it was what the
// ReadFrom had read, a buffer more than b took.
func TestReview26RelayGoexitReadFromCounts(t *testing.T) {
	e := newTestEngine(t)
	took := new(atomic.Int64)
	a := struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(make([]byte, 1<<20)), io.Discard}
	b := goexitReaderFrom{goexitLater{limit: 1, took: took}}
	var aToB, bToA int64
	var err error
	fdtest.Within(t, 20*time.Second, func() { aToB, bToA, err = e.RelayWith(context.Background(), a, b) })
	if !errors.Is(err, fanout.ErrGoexit) {
		t.Errorf("err = %v, want fanout.ErrGoexit", err)
	}
	if want := took.Load(); want == 0 || aToB != want || bToA != 0 {
		t.Errorf("aToB, bToA = %d, %d; want %d (what b took before the Goexit), 0", aToB, bToA, want)
	}
}
