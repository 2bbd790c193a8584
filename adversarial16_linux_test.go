package pipes

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
)

// readEOFWriter is one end of a relay: it reads as EOF at once and
// writes through w.
type readEOFWriter struct{ io.Writer }

func (readEOFWriter) Read([]byte) (int, error) { return 0, io.EOF }

// readOnlyEnd is the other end: it yields r and drops what it is given.
type readOnlyEnd struct{ io.Reader }

func (readOnlyEnd) Write(p []byte) (int, error) { return len(p), nil }

// TestUserspaceInvalidWriteCountNotMetered: a destination whose Write
// returns a count below 0 or above what it was given fails as io.Copy
// fails with it ("invalid write result", that Write counting none), and
// the engine's Stats.Bytes and a relay's RelayProgress count what the
// copy returns: none of that Write. Before, the userspace copy's meter
// took the count as it came, so Stats.Bytes grew by more bytes than the
// source had (or, for a negative count, wrapped to near 2^64) and
// RelayProgress went above the relay's own count or below zero.
func TestUserspaceInvalidWriteCountNotMetered(t *testing.T) {
	data := strings.Repeat("0123456789", 5000)
	for _, extra := range []int{1, 1 << 20, -len(data) - 1, -(1 << 20)} {
		_, ioErr := io.Copy(badCountWriter{extra}, struct{ io.Reader }{strings.NewReader(data)})
		t.Run(fmt.Sprintf("Copy/%+d", extra), func(t *testing.T) {
			e := newTestEngine(t)
			before := e.Stats().Bytes
			n, err := e.Copy(badCountWriter{extra}, struct{ io.Reader }{strings.NewReader(data)})
			if n != 0 || err == nil || err.Error() != ioErr.Error() {
				t.Errorf("Copy = %d, %v; want 0, %v (io.Copy's)", n, err, ioErr)
			}
			if got := e.Stats().Bytes - before; got != uint64(n) {
				t.Errorf("Stats.Bytes grew by %d; want %d, what Copy returned", got, n)
			}
		})
		t.Run(fmt.Sprintf("RelayProgress/%+d", extra), func(t *testing.T) {
			e := newTestEngine(t)
			var aToB, bToA atomic.Int64
			a := readEOFWriter{badCountWriter{extra}}
			b := readOnlyEnd{struct{ io.Reader }{bytes.NewReader([]byte(data))}}
			x, y, err := e.RelayWith(context.Background(), a, b, RelayProgress(&aToB, &bToA))
			if err == nil {
				t.Errorf("Relay = %d, %d, nil; want io.Copy's error (%v)", x, y, ioErr)
			}
			if aToB.Load() != x || bToA.Load() != y || y != 0 {
				t.Errorf("Relay = %d, %d, %v; RelayProgress %d, %d; want bToA 0 and progress equal to the result", x, y, err, aToB.Load(), bToA.Load())
			}
		})
	}
}
