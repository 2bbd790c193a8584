//go:build !pipes_portable

package pipes

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// BenchmarkCopySmallFileToSocket measures the per-copy cost of a single
// small copy from a cached file to a unix socket: the engine (sendfile,
// after classifying both ends) against io.Copy (Go's sendfile path).
func BenchmarkCopySmallFileToSocket(b *testing.B) {
	e, err := NewEngine()
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	for _, size := range []int64{4 << 10, 64 << 10} {
		path := filepath.Join(b.TempDir(), "src")
		if err := os.WriteFile(path, fdtest.Random(int(size)), 0o600); err != nil {
			b.Fatal(err)
		}
		benchCopySmallFile(b, e, path, size)
	}
}

func benchCopySmallFile(b *testing.B, e *Engine, path string, size int64) {
	for _, bc := range []struct {
		name string
		copy func(io.Writer, io.Reader) (int64, error)
	}{{"pipes", e.Copy}, {"io.Copy", io.Copy}} {
		b.Run(fmt.Sprintf("%s/size=%d", bc.name, size), func(b *testing.B) {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			a, r := unixPair(b)
			defer a.Close()
			defer r.Close()
			go io.Copy(io.Discard, r)
			b.SetBytes(size)
			for b.Loop() {
				f.Seek(0, io.SeekStart)
				if n, err := bc.copy(a, f); n != size || err != nil {
					b.Fatalf("copy = (%d, %v)", n, err)
				}
			}
		})
	}
}

// BenchmarkCopyPoolExhausted measures a healthy TCP -> TCP copy while
// every pooled pipe is pinned by a copy whose destination never reads:
// each round goes through the engine's userspace buffer. Side by side:
// the same copy with a free pipe, and io.Copy (Go's own splice path).
func BenchmarkCopyPoolExhausted(b *testing.B) {
	const size = 32 << 20
	data := fdtest.Random(size)
	for _, bc := range []struct {
		name   string
		pinned bool
		copy   func(e *Engine) func(io.Writer, io.Reader) (int64, error)
	}{
		{"pipes/free", false, func(e *Engine) func(io.Writer, io.Reader) (int64, error) { return e.Copy }},
		{"pipes/exhausted", true, func(e *Engine) func(io.Writer, io.Reader) (int64, error) { return e.Copy }},
		{"io.Copy", false, func(*Engine) func(io.Writer, io.Reader) (int64, error) { return io.Copy }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e, err := NewEngine(WithMaxPipes(1))
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			if bc.pinned {
				// A copy into a socket nobody reads pins the only
				// pipe: more is fed than the sockets' buffers hold.
				in, feed := tcpPair(b)
				out, stalled := tcpPair(b)
				out.SetWriteBuffer(4096)
				stalled.SetReadBuffer(4096)
				defer stalled.Close()
				defer out.Close()
				defer feed.Close()
				defer in.Close()
				go feed.Write(data)
				e.CopyAsync(context.Background(), out, in)
				for e.sys.pool.Stats().InUse == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			copy := bc.copy(e)
			b.SetBytes(size)
			for b.Loop() {
				src, feed := tcpPair(b)
				dst, sink := tcpPair(b)
				go func() { feed.Write(data); feed.Close() }()
				done := make(chan struct{})
				go func() { io.Copy(io.Discard, sink); close(done) }()
				if n, err := copy(dst, src); n != size || err != nil {
					b.Fatalf("copy = (%d, %v)", n, err)
				}
				dst.Close()
				<-done
				src.Close()
				sink.Close()
			}
			if bc.pinned && e.Stats().PoolExhausted == 0 {
				b.Fatal("the pool was never exhausted")
			}
		})
	}
}

// BenchmarkCopyMessages measures the per-message cost of one long-lived
// TCP -> TCP copy carrying request-sized messages, as one direction of a
// proxied connection does: a message is written into the source socket,
// and the next is sent only once the previous one was read whole from the
// destination, so every message wakes the copy from an idle source.
// Side by side: the engine (CopyAsync) and io.Copy (Go's splice path).
// The "pipe" sub-benchmarks feed the copy from a pipe instead, as a
// process's output is relayed to a socket (io.Copy: read(2) and
// write(2) through its buffer).
func BenchmarkCopyMessages(b *testing.B) {
	e, err := NewEngine()
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	for _, size := range []int{4 << 10, 64 << 10} {
		for _, fromPipe := range []bool{false, true} {
			for _, bc := range []struct {
				name  string
				start func(dst io.Writer, src io.Reader) func() (int64, error)
			}{
				{"pipes", func(dst io.Writer, src io.Reader) func() (int64, error) {
					return e.CopyAsync(context.Background(), dst, src).Wait
				}},
				{"io.Copy", func(dst io.Writer, src io.Reader) func() (int64, error) {
					type result struct {
						n   int64
						err error
					}
					ch := make(chan result, 1)
					go func() { n, err := io.Copy(dst, src); ch <- result{n, err} }()
					return func() (int64, error) { r := <-ch; return r.n, r.err }
				}},
			} {
				name := fmt.Sprintf("%s/size=%d", bc.name, size)
				if fromPipe {
					name = fmt.Sprintf("%s/pipe/size=%d", bc.name, size)
				}
				b.Run(name, func(b *testing.B) {
					var src io.ReadCloser
					var feed io.WriteCloser
					if fromPipe {
						r, w, err := os.Pipe()
						if err != nil {
							b.Fatal(err)
						}
						src, feed = r, w
					} else {
						src, feed = tcpPair(b)
					}
					dst, sink := tcpPair(b)
					defer src.Close()
					defer sink.Close()
					wait := bc.start(dst, src)
					msg := fdtest.Random(size)
					got := make([]byte, size)
					b.SetBytes(int64(size))
					b.ReportAllocs()
					for b.Loop() {
						if _, err := feed.Write(msg); err != nil {
							b.Fatal(err)
						}
						if _, err := io.ReadFull(sink, got); err != nil {
							b.Fatal(err)
						}
					}
					feed.Close()
					if _, err := wait(); err != nil {
						b.Fatal(err)
					}
					dst.Close()
				})
			}
		}
	}
}

// BenchmarkRateLimit measures how closely a paced TCP -> TCP copy keeps
// to its Limiter's rate over about two seconds (the rate-error-% metric;
// the bucket's initial burst is left out), and its CPU time per byte
// (process-wide) against an unpaced copy of a source that a writer feeds
// at the same rate.
func BenchmarkRateLimit(b *testing.B) {
	for _, rate := range []int64{1 << 20, 100 << 20} {
		burst := int64(max(rate/10, 64<<10)) // NewLimiter's default
		for _, paced := range []bool{true, false} {
			name := fmt.Sprintf("rate=%dMiB/s/limiter", rate>>20)
			if !paced {
				name = fmt.Sprintf("rate=%dMiB/s/paced-writer", rate>>20)
			}
			b.Run(name, func(b *testing.B) {
				e, err := NewEngine()
				if err != nil {
					b.Fatal(err)
				}
				defer e.Close()
				size := (2*rate + burst) &^ (64<<10 - 1) // whole chunks of the writer
				for b.Loop() {
					src, feed := tcpPair(b)
					dst, sink := tcpPair(b)
					go func() {
						chunk := fdtest.Random(64 << 10)
						wl := NewLimiter(rate, 0)
						for sent := int64(0); sent < size; sent += int64(len(chunk)) {
							if !paced {
								for got := 0; got < len(chunk); {
									n, _ := wl.Take(context.Background(), len(chunk)-got)
									got += n
								}
							}
							feed.Write(chunk)
						}
						feed.Close()
					}()
					done := make(chan struct{})
					go func() { io.Copy(io.Discard, sink); close(done) }()
					var r io.Reader = src
					if paced {
						r = RateLimit(src, NewLimiter(rate, 0))
					}
					cpu0 := cpuTime()
					start := time.Now()
					n, err := e.Copy(dst, r)
					took := time.Since(start)
					cpu := cpuTime() - cpu0
					if n != size || err != nil {
						b.Fatalf("copy = (%d, %v)", n, err)
					}
					dst.Close()
					<-done
					src.Close()
					sink.Close()
					got := float64(size-burst) / took.Seconds()
					b.ReportMetric(100*(got-float64(rate))/float64(rate), "rate-error-%")
					b.ReportMetric(float64(cpu.Nanoseconds())/float64(size), "cpu-ns/B")
				}
			})
		}
	}
}

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCopyPerCopy measures what one Copy costs besides moving bytes,
// against io.Copy: an empty file to a unix socket (classification, the
// Close interruption, one sendfile(2) that finds EOF), and a short TCP
// -> TCP copy from a fresh connection holding 4 KiB and its FIN (the
// intermediate pipe taken and given back; io.Copy splices through its
// own). pipes-ctx is CopyContext with a context that can end, as a
// server's request context: a context of the copy's own, and its
// interruption armed on it. allocs/op is the per-copy allocation count.
func BenchmarkCopyPerCopy(b *testing.B) {
	e, err := NewEngine()
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	copyContext := func(dst io.Writer, src io.Reader) (int64, error) { return e.CopyContext(ctx, dst, src) }
	for _, bc := range []struct {
		name string
		copy func(io.Writer, io.Reader) (int64, error)
	}{{"pipes", e.Copy}, {"pipes-ctx", copyContext}, {"io.Copy", io.Copy}} {
		b.Run("empty-file-unix/"+bc.name, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "empty"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			dst, peer := unixPair(b)
			defer dst.Close()
			defer peer.Close()
			b.ReportAllocs()
			for b.Loop() {
				if n, err := bc.copy(dst, f); n != 0 || err != nil {
					b.Fatalf("copy = (%d, %v)", n, err)
				}
			}
		})
		b.Run("4K-tcp-tcp/"+bc.name, func(b *testing.B) {
			dst, peer := tcpPair(b)
			defer dst.Close()
			defer peer.Close()
			go io.Copy(io.Discard, peer)
			msg := fdtest.Random(4 << 10)
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				w, r := tcpPair(b)
				if _, err := w.Write(msg); err != nil {
					b.Fatal(err)
				}
				w.CloseWrite()
				b.StartTimer()
				if n, err := bc.copy(dst, r); n != int64(len(msg)) || err != nil {
					b.Fatalf("copy = (%d, %v)", n, err)
				}
				b.StopTimer()
				w.Close()
				r.Close()
				b.StartTimer()
			}
		})
	}
}

// BenchmarkPipeWriteToMessages is BenchmarkCopyMessages for the original
// library's pipe API: one long-lived PipeReader.WriteTo into a TCP
// socket (a copy with no pool, which makes its own intermediate pipe)
// carrying messages, each written into the pipe once the previous one
// was read whole from the socket's peer; side by side with io.Copy from
// the same kind of pipe (read(2) and write(2) through its buffer).
func BenchmarkPipeWriteToMessages(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10} {
		for _, name := range []string{"WriteTo", "io.Copy"} {
			b.Run(fmt.Sprintf("%s/size=%d", name, size), func(b *testing.B) {
				r, w, err := New()
				if err != nil {
					b.Fatal(err)
				}
				dst, sink := tcpPair(b)
				defer sink.Close()
				done := make(chan error, 1)
				go func() {
					var err error
					if name == "WriteTo" {
						_, err = r.WriteTo(dst)
					} else {
						_, err = io.Copy(dst, struct{ io.Reader }{r})
					}
					r.Close()
					done <- err
				}()
				msg := fdtest.Random(size)
				got := make([]byte, size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := w.Write(msg); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(sink, got); err != nil {
						b.Fatal(err)
					}
				}
				w.Close()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				dst.Close()
			})
		}
	}
}
