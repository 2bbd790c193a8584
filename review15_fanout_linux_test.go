//go:build !pipes_portable

package pipes

import (
	"context"
	"io"
	"testing"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestReview15FanOutPanicLimitedReader: a FanOut of an *io.LimitedReader
// whose destination's Write panics leaves N decreased by the bytes read
// from the source, as a recovered io.Copy leaves it (LimitedReader.Read
// lowers N as it reads), on the kernel path as on the userspace one: N
// and the file's offset agree on how much of the limit is left. The
// kernel path moved the offset and left N as it was.
func TestReview15FanOutPanicLimitedReader(t *testing.T) {
	fdtest.Check(t)
	const size = 4 << 20
	for _, tc := range []struct {
		name string
		src  func(t *testing.T) (io.Reader, func() int64) // the source, and the bytes read from it
	}{
		{"kernel", func(t *testing.T) (io.Reader, func() int64) {
			f := fdtest.TempFile(t, fdtest.Random(size))
			return f, func() int64 {
				off, err := f.Seek(0, io.SeekCurrent)
				if err != nil {
					t.Fatal(err)
				}
				return off
			}
		}},
		{"userspace", func(t *testing.T) (io.Reader, func() int64) {
			r := &countingReader{r: &panicEnd{readOK: size, writeOK: -1}}
			return r, func() int64 { return r.n }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := NewEngine()
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			src, read := tc.src(t)
			lr := &io.LimitedReader{R: src, N: size}
			bad := &panicEnd{val: "boom", writeOK: 64 << 10}
			func() {
				defer func() {
					if p := recover(); p != "boom" {
						t.Fatalf("recovered %v, want the Write's panic", p)
					}
				}()
				e.FanOut(context.Background(), lr, []io.Writer{drainedPipe(t), bad})
			}()
			n := read()
			if n == 0 {
				t.Fatal("nothing was read from the source before the panic")
			}
			if lr.N != size-n {
				t.Errorf("LimitedReader.N = %d after %d bytes were read; want %d", lr.N, n, size-n)
			}
		})
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}
