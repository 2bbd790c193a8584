//go:build linux && !pipes_portable

package pipes

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/pipes-go/pipes/splice"
	"golang.org/x/sys/unix"
)

var benchHuge = flag.Bool("pipes.bench1g", false, "include the 1 GiB size in BenchmarkReadFrom")

// benchSizes are the original library's headline sizes.
var benchSizes = []struct {
	name string
	n    int64
}{
	{"16K", 16 << 10}, {"32K", 32 << 10}, {"64K", 64 << 10}, {"128K", 128 << 10},
	{"256K", 256 << 10}, {"512K", 512 << 10}, {"1MB", 1 << 20}, {"10MB", 10 << 20},
	{"100MB", 100 << 20}, {"1GB", 1 << 30},
}

// benchFile returns a file of n bytes, its pages read once so the page
// cache is warm.
func benchFile(b *testing.B, n int64) *os.File {
	b.Helper()
	f, err := os.Create(filepath.Join(b.TempDir(), "data"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	for left := n; left > 0; {
		m, err := f.Write(chunk[:min(left, int64(len(chunk)))])
		if err != nil {
			b.Fatal(err)
		}
		left -= int64(m)
	}
	warm(b, f)
	return f
}

// warm re-reads f so the timed run reads from the page cache.
func warm(b *testing.B, f *os.File) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		b.Fatal(err)
	}
	io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 1<<20))
}

// drainers empty the pipe concurrently: the original's (8 KiB reads into
// userspace) and a splice to /dev/null, which does not cap the writer.
var drainers = []struct {
	name  string
	drain func(r *PipeReader)
}{
	{"drain=read8K", func(r *PipeReader) {
		io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, make([]byte, 8192))
	}},
	{"drain=splice", func(r *PipeReader) {
		null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer null.Close()
		r.WriteTo(null)
	}},
}

// copiers are the ways the file is copied into the pipe.
var copiers = []struct {
	name string
	copy func(w *PipeWriter, f *os.File, n int64) (int64, error)
}{
	{"copy=splice", func(w *PipeWriter, f *os.File, _ int64) (int64, error) { return w.ReadFrom(f) }},
	{"copy=original-algorithm", origAlgorithmReadFrom},
	{"copy=userspace32K", func(w *PipeWriter, f *os.File, _ int64) (int64, error) {
		return io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{f}, make([]byte, 32<<10))
	}},
}

// BenchmarkReadFrom is the original library's headline: a regular file
// copied into a pipe with PipeWriter.ReadFrom (splice) against io.Copy
// through a 32 KiB userspace buffer, with the pipe drained concurrently.
// Sizes of 100 MB and up are skipped with -short; 1 GB needs
// -pipes.bench1g.
func BenchmarkReadFrom(b *testing.B) {
	for _, d := range drainers {
		for _, c := range copiers {
			for _, s := range benchSizes {
				b.Run(fmt.Sprintf("%s/%s/%s", d.name, c.name, s.name), func(b *testing.B) {
					if s.n >= 1<<30 && !*benchHuge {
						b.Skip("1 GB: run with -pipes.bench1g")
					}
					if s.n >= 100<<20 && testing.Short() {
						b.Skip("skipped with -short")
					}
					f := benchFile(b, s.n)
					r, w, err := New()
					if err != nil {
						b.Fatal(err)
					}
					done := make(chan struct{})
					go func() { d.drain(r); close(done) }()
					defer func() { w.Close(); <-done; r.Close() }()
					warm(b, f)
					b.SetBytes(s.n)
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						if _, err := f.Seek(0, io.SeekStart); err != nil {
							b.Fatal(err)
						}
						n, err := c.copy(w, f, s.n)
						if err != nil || n != s.n {
							b.Fatalf("copy = %d, %v", n, err)
						}
					}
				})
			}
		}
	}
}

// BenchmarkReadFromPool measures the intermediate pipe's size, the pool's
// knob: a regular file copied to /dev/null (neither side a pipe, so
// splice.Copy goes file -> pooled pipe -> /dev/null) with 1 MiB and
// 64 KiB pipes.
func BenchmarkReadFromPool(b *testing.B) {
	for _, size := range []int{64 << 10, 1 << 20} {
		for _, s := range []struct {
			name string
			n    int64
		}{{"1MB", 1 << 20}, {"10MB", 10 << 20}, {"100MB", 100 << 20}} {
			b.Run(fmt.Sprintf("pipe=%dK/%s", size>>10, s.name), func(b *testing.B) {
				if s.n >= 100<<20 && testing.Short() {
					b.Skip("skipped with -short")
				}
				pool := splice.NewPool(size, 4)
				defer pool.Close()
				f := benchFile(b, s.n)
				null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
				if err != nil {
					b.Fatal(err)
				}
				defer null.Close()
				src, _ := readerEndpoint(f)
				dst, _ := writerEndpoint(null)
				warm(b, f)
				b.SetBytes(s.n)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					f.Seek(0, io.SeekStart)
					b.StartTimer()
					n, handled, err := splice.Copy(context.Background(), &dst.End, &src.End, -1, pool)
					if err != nil || !handled || n != s.n {
						b.Fatalf("Copy = %d, %v, %v", n, handled, err)
					}
				}
			})
		}
	}
}

// origAlgorithmReadFrom is the original library's copy loop, rewritten
// here as a baseline measured in the same run: the source's RawConn.Read
// nested inside the pipe's RawConn.Write, splice(2) with
// SPLICE_F_MOVE|SPLICE_F_NONBLOCK|SPLICE_F_MORE until EOF or EAGAIN, and
// the outer callback waiting on the pipe when a splice says EAGAIN. No
// classification, no pool.
func origAlgorithmReadFrom(w *PipeWriter, f *os.File, _ int64) (int64, error) {
	wc, err := w.SyscallConn()
	if err != nil {
		return 0, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var copied int64
	var spliceErr, readErr error
	err = wc.Write(func(wfd uintptr) bool {
		readErr = rc.Read(func(rfd uintptr) bool {
			for {
				n, e := unix.Splice(int(rfd), nil, int(wfd), nil, math.MaxInt32, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MORE)
				if n > 0 {
					copied += int64(n) // int64, or int on 32-bit systems
				}
				spliceErr = e
				if e == unix.EINTR {
					continue
				}
				if e != nil || n == 0 {
					return true
				}
			}
		})
		return readErr != nil || spliceErr != unix.EAGAIN
	})
	if err == nil {
		err = readErr
	}
	if err == nil {
		err = spliceErr
	}
	return copied, err
}
