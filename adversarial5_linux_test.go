//go:build linux

package pipes

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Adversarial tests of the lifecycle of operations: a context done
// before the operation starts, Close called from many goroutines at
// once, rate limits that cannot grant a byte, and the end of a paced
// fan-out.

// adv5Source returns a source of kind "file", "unix" (a socket whose
// peer sends data and closes), "pipe" (a *PipeReader likewise) or
// "reader" (no descriptor) that yields data.
func adv5Source(t *testing.T, kind string, data []byte) io.Reader {
	t.Helper()
	switch kind {
	case "file":
		return fdtest.TempFile(t, data)
	case "unix":
		a, b := unixPair(t)
		t.Cleanup(func() { a.Close(); b.Close() })
		go func() { a.Write(data); a.CloseWrite() }()
		return b
	case "pipe":
		r, w, err := New()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); w.Close() })
		go func() { w.Write(data); w.Close() }()
		return r
	case "reader":
		return bytes.NewReader(data)
	}
	t.Fatalf("unknown source kind %q", kind)
	return nil
}

// adv5Sink returns a unix socket whose peer reads everything, and a
// finish that closes it and returns what the peer got.
func adv5Sink(t *testing.T) (*net.UnixConn, func() []byte) {
	a, b := unixPair(t)
	t.Cleanup(func() { a.Close(); b.Close() })
	got := make(chan []byte, 1)
	go func() {
		x, _ := io.ReadAll(b)
		got <- x
	}()
	return a, func() []byte {
		a.Close()
		x := <-got
		got <- x
		return x
	}
}

// TestAdv5NotStarted runs every operation with a context cancelled with
// a cause before it starts: it must copy nothing and fail with an error
// matching context.Canceled and the cause, as CopyContext's and
// Relay's do ("one builder makes every cancellation error").
func TestAdv5NotStarted(t *testing.T) {
	fdtest.Check(t)
	cause := errors.New("shutting down")
	ops := []struct {
		name string
		run  func(e *Engine, ctx context.Context, dst io.Writer, src io.Reader) (int64, error)
	}{
		{"CopyAsync", func(e *Engine, ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
			return e.CopyAsync(ctx, dst, src).Wait()
		}},
		{"CopyContext", func(e *Engine, ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
			return e.CopyContext(ctx, dst, src)
		}},
		{"CopyBatch", func(e *Engine, ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
			r := e.CopyBatch(ctx, []Pair{{dst, src}})[0]
			return r.Written, r.Err
		}},
		{"FanOut", func(e *Engine, ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
			r := e.FanOut(ctx, src, []io.Writer{dst})[0]
			return r.Written, r.Err
		}},
		{"Relay", func(e *Engine, ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
			x, y, err := e.Relay(ctx, dst.(io.ReadWriter), src.(io.ReadWriter))
			return x + y, err
		}},
	}
	for _, ec := range engineCases(t) {
		e := newCaseEngine(t, ec)
		for _, op := range ops {
			for _, kind := range []string{"unix", "file"} {
				if op.name == "Relay" && kind == "file" {
					continue
				}
				t.Run(ec.name+"/"+op.name+"/"+kind, func(t *testing.T) {
					data := fdtest.Random(64 << 10)
					src := adv5Source(t, kind, data)
					dst, finish := adv5Sink(t)
					ctx, cancel := context.WithCancelCause(context.Background())
					cancel(cause)
					n, err := op.run(e, ctx, dst, src)
					if n != 0 || !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
						t.Errorf("(%d, %v), want (0, an error matching context.Canceled and the cause)", n, err)
					}
					if got := finish(); len(got) != 0 {
						t.Errorf("the destination got %d bytes", len(got))
					}
					// The source is untouched: all of it is still there.
					if rest, _ := io.ReadAll(src); !bytes.Equal(rest, data) {
						t.Errorf("the source holds %d bytes after the operation, want %d", len(rest), len(data))
					}
				})
			}
		}
	}
}
