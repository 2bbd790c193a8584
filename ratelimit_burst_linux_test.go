//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"testing"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestAdv11HugeBurst: a Limiter whose bucket holds up to math.MaxInt
// bytes (a caller's "no burst limit") grants between 1 and max bytes,
// and paced copies through it deliver every byte: a bucket that large
// holds more than an int converts from a float64, which granted a
// negative count, and a paced Read sliced its buffer with it and
// panicked.
func TestAdv11HugeBurst(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(1 << 20)
	e := newTestEngine(t)
	for _, burst := range []int{math.MaxInt, math.MaxInt - 1} {
		t.Run(fmt.Sprintf("burst=%d/Take", burst), func(t *testing.T) {
			l := NewLimiter(1<<30, burst)
			for range 3 {
				if n, err := l.Take(context.Background(), 1000); n < 1 || n > 1000 || err != nil {
					t.Fatalf("Take(1000) = (%d, %v); want 1..1000 bytes", n, err)
				}
			}
		})
		srcs := map[string]func() io.Reader{
			"file":   func() io.Reader { return fdtest.TempFile(t, data) },
			"reader": func() io.Reader { return bytes.NewReader(data) },
		}
		for sname, src := range srcs {
			for _, mode := range []string{"Read", "Copy", "FanOut"} {
				t.Run(fmt.Sprintf("burst=%d/%s/%s", burst, sname, mode), func(t *testing.T) {
					r := RateLimit(src(), NewLimiter(1<<30, burst))
					pr, pw, err := os.Pipe()
					if err != nil {
						t.Fatal(err)
					}
					defer pr.Close()
					got := make(chan []byte)
					go func() { b, _ := io.ReadAll(pr); got <- b }()
					var n int64
					switch mode {
					case "Read":
						n, err = io.Copy(pw, struct{ io.Reader }{r})
					case "Copy":
						n, err = e.Copy(pw, r)
					case "FanOut":
						res := e.FanOut(context.Background(), r, []io.Writer{pw})
						n, err = res[0].Written, res[0].Err
					}
					pw.Close()
					b := <-got
					if n != int64(len(data)) || err != nil || !bytes.Equal(b, data) {
						t.Fatalf("copy = (%d, %v), %d bytes delivered; want (%d, nil) and the data", n, err, len(b), len(data))
					}
				})
			}
		}
	}
}
