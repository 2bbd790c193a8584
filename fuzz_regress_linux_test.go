//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestFuzzEmptySourceIntoReaderlessPipe: a copy whose source is at EOF
// into a pipe whose reader is gone has nothing to write, and io.Copy
// returns 0, nil: it reads first. splice(2) into a pipe without readers
// fails with EPIPE before it looks at the source, so the copy must find
// out whether the source had anything before it reports EPIPE. With
// bytes left in the source, EPIPE it is, as io.Copy's.
func TestFuzzEmptySourceIntoReaderlessPipe(t *testing.T) {
	fdtest.Check(t)
	sources := endingSources("file", "file at its end", "pipe", "unix", "tcp")
	engines := append(engineCases(t), engineCase{"splice", []Option{WithBackend(BackendSplice)}},
		engineCase{"maxpipes1", []Option{WithMaxPipes(1)}})
	for _, ec := range engines {
		e := newTestEngine(t, ec.opts...)
		for _, sc := range sources {
			for _, size := range []int{0, 1000} {
				for _, how := range []string{"Copy", "CopyContext"} {
					name := ec.name + "/" + sc.name + "/" + how
					if size > 0 {
						name += "/with bytes"
					}
					t.Run(name, func(t *testing.T) {
						run := func(copy func(io.Writer, io.Reader) (int64, error)) (int64, error) {
							r, w, err := os.Pipe()
							if err != nil {
								t.Fatal(err)
							}
							defer w.Close()
							r.Close()
							return copy(w, sc.make(t, bytes.Repeat([]byte{'x'}, size)))
						}
						// Through a buffer: Go's own splice from a
						// socket keeps a pipe of its cache, which the
						// descriptor check would count.
						wantN, wantErr := run(func(w io.Writer, r io.Reader) (int64, error) {
							return io.Copy(w, onlyReader{r})
						})
						n, err := run(func(w io.Writer, r io.Reader) (int64, error) {
							if how == "Copy" {
								return e.Copy(w, r)
							}
							return e.CopyContext(context.Background(), w, r)
						})
						if n != wantN || (err == nil) != (wantErr == nil) {
							t.Errorf("got %d, %v; io.Copy gives %d, %v", n, err, wantN, wantErr)
						}
					})
				}
			}
		}
	}
}

// TestFuzzEmptySourcePastWriteDeadline: a copy of a source at EOF into a
// socket or pipe whose write deadline has passed writes nothing, and
// io.Copy returns 0, nil: it reads first. The kernel paths wait for the
// destination before they read, so its deadline must not fail a copy
// that has nothing to write. With bytes to write the deadline fails it,
// as it fails io.Copy.
func TestFuzzEmptySourcePastWriteDeadline(t *testing.T) {
	fdtest.Check(t)
	type deadliner interface {
		io.Writer
		SetWriteDeadline(time.Time) error
	}
	sinks := []struct {
		name string
		make func(t *testing.T) deadliner
	}{
		{"pipe", func(t *testing.T) deadliner {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close(); w.Close() })
			return w
		}},
		{"tcp", func(t *testing.T) deadliner {
			a, b := tcpPair(t)
			t.Cleanup(func() { a.Close(); b.Close() })
			return a
		}},
		{"unix", func(t *testing.T) deadliner {
			a, b := unixPair(t)
			t.Cleanup(func() { a.Close(); b.Close() })
			return a
		}},
	}
	sources := endingSources("file", "pipe", "tcp")
	engines := append(engineCases(t), engineCase{"splice", []Option{WithBackend(BackendSplice)}},
		engineCase{"pipesize1", []Option{WithPipeSize(1)}})
	for _, ec := range engines {
		e := newTestEngine(t, ec.opts...)
		for _, sc := range sources {
			for _, dc := range sinks {
				for _, size := range []int{0, 1000} {
					name := ec.name + "/" + sc.name + "/" + dc.name
					if size > 0 {
						name += "/with bytes"
					}
					t.Run(name, func(t *testing.T) {
						run := func(copy func(io.Writer, io.Reader) (int64, error)) (int64, error) {
							w := dc.make(t)
							w.SetWriteDeadline(time.Now().Add(-time.Second))
							return copy(w, sc.make(t, bytes.Repeat([]byte{'x'}, size)))
						}
						wantN, wantErr := run(func(w io.Writer, r io.Reader) (int64, error) {
							return io.Copy(w, onlyReader{r}) // no pipe of Go's splice cache
						})
						n, err := run(e.Copy)
						if n != wantN || (err == nil) != (wantErr == nil) || errors.Is(wantErr, os.ErrDeadlineExceeded) != errors.Is(err, os.ErrDeadlineExceeded) {
							t.Errorf("got %d, %v; io.Copy gives %d, %v", n, err, wantN, wantErr)
						}
					})
				}
			}
		}
	}
}

// TestFuzzEmptySourceIntoReadOnlyFile: splice(2) from a pipe into a
// file not open for writing fails with EBADF before it looks at the
// pipe, so a copy of a pipe at EOF into such a file failed where io.Copy,
// which reads first, returns 0, nil. With bytes to write, EBADF it is, as
// io.Copy's.
func TestFuzzEmptySourceIntoReadOnlyFile(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range []engineCase{{"default", nil}, {"splice", []Option{WithBackend(BackendSplice)}}} {
		e := newTestEngine(t, ec.opts...)
		for _, src := range []string{"pipe", "fifo"} {
			for _, size := range []int{0, 1000} {
				t.Run(fmt.Sprintf("%s/%s/%d", ec.name, src, size), func(t *testing.T) {
					run := func(copy func(io.Writer, io.Reader) (int64, error)) (int64, error) {
						var r, w *os.File
						if src == "pipe" {
							var err error
							if r, w, err = os.Pipe(); err != nil {
								t.Fatal(err)
							}
						} else {
							r, w = fifoPair(t)
						}
						defer r.Close()
						go func() { w.Write(bytes.Repeat([]byte{'x'}, size)); w.Close() }()
						dst := fdtest.TempFile(t, []byte("before")) // read-only
						return copy(dst, r)
					}
					wantN, wantErr := run(io.Copy)
					n, err := run(e.Copy)
					if n != wantN || (err == nil) != (wantErr == nil) || errors.Is(wantErr, syscall.EBADF) != errors.Is(err, syscall.EBADF) {
						t.Errorf("got %d, %v; io.Copy gives %d, %v", n, err, wantN, wantErr)
					}
				})
			}
		}
	}
}

// TestFuzzPipeEmptyPastWriteDeadline: PipeReader.WriteTo of a pipe at
// EOF into a destination whose write deadline has passed writes nothing
// and returns 0, nil, as io.Copy from an *os.File pipe does; so does
// PipeWriter.ReadFrom of a source at EOF with its own write deadline
// passed. With bytes to write, the deadline fails them.
func TestFuzzPipeEmptyPastWriteDeadline(t *testing.T) {
	fdtest.Check(t)
	for _, size := range []int{0, 1000} {
		t.Run(fmt.Sprintf("WriteTo/%d", size), func(t *testing.T) {
			r, w, err := New()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			go func() { w.Write(bytes.Repeat([]byte{'x'}, size)); w.Close() }()
			a, b := unixPair(t)
			defer a.Close()
			defer b.Close()
			a.SetWriteDeadline(time.Now().Add(-time.Second))
			n, err := r.WriteTo(a)
			if n != 0 || (size == 0) != (err == nil) || size > 0 && !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("WriteTo = %d, %v", n, err)
			}
		})
		t.Run(fmt.Sprintf("ReadFrom/%d", size), func(t *testing.T) {
			r, w, err := New()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()
			w.SetWriteDeadline(time.Now().Add(-time.Second))
			src := fdtest.TempFile(t, bytes.Repeat([]byte{'x'}, size))
			n, err := w.ReadFrom(src)
			if n != 0 || (size == 0) != (err == nil) || size > 0 && !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("ReadFrom = %d, %v", n, err)
			}
		})
	}
}

// endingSource is a source of the empty-source tests: it holds data,
// then ends (EOF).
type endingSource struct {
	name string
	make func(t *testing.T, data []byte) io.Reader
}

// endingSources returns the sources of the named kinds: a file read from
// its start, a file read from its 101st byte, a pipe, a unix and a TCP
// socket whose peers write data and close (or half-close).
func endingSources(names ...string) []endingSource {
	all := []endingSource{
		{"file", func(t *testing.T, data []byte) io.Reader { return fdtest.TempFile(t, data) }},
		{"file at its end", func(t *testing.T, data []byte) io.Reader {
			f := fdtest.TempFile(t, append(fdtest.Random(100), data...))
			if _, err := f.Seek(100, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			return f
		}},
		{"pipe", func(t *testing.T, data []byte) io.Reader {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			go func() { w.Write(data); w.Close() }()
			return r
		}},
		{"unix", func(t *testing.T, data []byte) io.Reader {
			a, b := unixPair(t)
			t.Cleanup(func() { a.Close(); b.Close() })
			go func() { b.Write(data); b.CloseWrite() }()
			return a
		}},
		{"tcp", func(t *testing.T, data []byte) io.Reader {
			a, b := tcpPair(t)
			t.Cleanup(func() { a.Close(); b.Close() })
			go func() { b.Write(data); b.CloseWrite() }()
			return a
		}},
	}
	return slices.DeleteFunc(all, func(s endingSource) bool { return !slices.Contains(names, s.name) })
}
