//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestAdv27ShortSections: copies of *io.LimitedReader sections of large
// files, at many offsets and sizes around the bounds of the Warmer's
// check of short copies (1 MiB, 4 MiB), with the file's pages cached
// in whole, in part or not at all, into TCP sockets and pipes, beside
// another file copy (so that they take the ring's paths), on both
// backends; and a section read through an io.SectionReader (no
// descriptor: userspace). Each must deliver exactly the file's bytes at
// its offset, and leave the offset after them.
func TestAdv27ShortSections(t *testing.T) {
	const size = 6<<20 + 123 // over cachedChunk, not a whole page
	data := fdtest.Random(size)
	page := int64(os.Getpagesize())
	type place struct {
		name string
		open func(t *testing.T) *os.File
	}
	places := []place{
		{"disk", func(t *testing.T) *os.File { return fdtest.TempFile(t, data) }},
		{"tmpfs", func(t *testing.T) *os.File {
			var st unix.Statfs_t
			if unix.Statfs("/dev/shm", &st) != nil || st.Type != unix.TMPFS_MAGIC {
				t.Skip("no tmpfs at /dev/shm")
			}
			dir, err := os.MkdirTemp("/dev/shm", "adv27")
			if err != nil {
				t.Skip(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			p := filepath.Join(dir, "data")
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return f
		}},
		{"overlay", func(t *testing.T) *os.File {
			f, err := os.Open(filepath.Join(fdtest.Overlay(t, data), "data"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return f
		}},
		{"direct", func(t *testing.T) *os.File {
			f := fdtest.TempFile(t, data)
			d, err := os.OpenFile(f.Name(), os.O_RDONLY|syscall.O_DIRECT, 0)
			if err != nil {
				t.Skipf("O_DIRECT: %v", err)
			}
			t.Cleanup(func() { d.Close() })
			return d
		}},
	}
	type section struct {
		off, n int64
	}
	sections := []section{
		{0, 1}, {0, 4096}, {0, 1<<20 - 1}, {0, 1 << 20}, {0, 1<<20 + 1},
		{1, 1<<20 - 1}, {4095, 513 << 10}, {4 << 20, 512 << 10}, {4<<20 - 1, 1 << 20},
		{3 << 20, 4<<20 - 1}, {3 << 20, 4 << 20}, {size - 1000, 1000}, {size - 1000, 999 << 10},
		{size, 4096}, {size + 4096, 512 << 10}, {size - 1, 1 << 20}, {123457, 4<<20 + 1},
	}
	caches := []string{"cold", "hot", "part"}
	for _, backend := range []Backend{BackendIOUring, BackendSplice} {
		t.Run(string(backend), func(t *testing.T) {
			e, err := NewEngine(WithBackend(backend))
			if err != nil {
				t.Skipf("backend %s: %v", backend, err)
			}
			t.Cleanup(func() { e.Close() })
			adv27Busy(t, e)
			for _, pl := range places {
				t.Run(pl.name, func(t *testing.T) {
					f := pl.open(t)
					for _, cache := range caches {
						for _, sec := range sections {
							if pl.name == "direct" && (sec.off%page != 0 || sec.n%page != 0) {
								continue // O_DIRECT refuses it, as it refuses io.Copy's reads
							}
							for _, kind := range []string{"tcp", "pipe"} {
								switch cache {
								case "cold":
									unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
								case "hot":
									if pl.name != "direct" {
										io.Copy(io.Discard, io.NewSectionReader(f, 0, size))
									}
								case "part":
									// The section's first and last pages only,
									// no readahead.
									unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
									unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM)
									if pl.name != "direct" {
										f.ReadAt(make([]byte, 1), sec.off)
										f.ReadAt(make([]byte, 1), sec.off+sec.n-1)
									}
									unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_NORMAL)
								}
								adv27CopySection(t, e, f, data, sec.off, sec.n, kind, cache)
							}
						}
					}
				})
			}
			t.Run("SectionReader", func(t *testing.T) {
				f := fdtest.TempFile(t, data)
				for _, sec := range sections {
					var buf bytes.Buffer
					r := io.NewSectionReader(f, sec.off, sec.n)
					n, err := e.Copy(&buf, r)
					want := data[min(sec.off, size):min(sec.off+sec.n, size)]
					if err != nil || n != int64(len(want)) || !bytes.Equal(buf.Bytes(), want) {
						t.Errorf("SectionReader(%d, %d) = (%d, %v), bytes equal: %v; want %d bytes", sec.off, sec.n, n, err, bytes.Equal(buf.Bytes(), want), len(want))
					}
				}
			})
		})
	}
}

// adv27CopySection copies the n bytes at off of f (holding data) as an
// *io.LimitedReader into a destination of kind on e, and checks what
// arrived, the count, the reader's N and the file's offset after.
func adv27CopySection(t *testing.T, e *Engine, f *os.File, data []byte, off, n int64, kind, cache string) {
	t.Helper()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	var s sink
	if kind == "tcp" {
		s = sinkKinds[3].make(t)
	} else {
		s = sinkKinds[1].make(t)
	}
	lr := &io.LimitedReader{R: f, N: n}
	got, err := e.Copy(s.w, lr)
	size := int64(len(data))
	want := data[min(off, size):min(off+n, size)]
	m, sum := s.finish()
	what := fmt.Sprintf("%s section (%d, %d) -> %s", cache, off, n, kind)
	if err != nil || got != int64(len(want)) {
		t.Errorf("%s = (%d, %v), want (%d, nil)", what, got, err, len(want))
	}
	if m != int64(len(want)) || sum != sha256.Sum256(want) {
		t.Errorf("%s: destination got %d bytes, not the file's %d at the offset", what, m, len(want))
	}
	if lr.N != n-int64(len(want)) {
		t.Errorf("%s: N = %d after, want %d", what, lr.N, n-int64(len(want)))
	}
	if pos, _ := f.Seek(0, io.SeekCurrent); pos != off+int64(len(want)) {
		t.Errorf("%s: file offset %d after, want %d", what, pos, off+int64(len(want)))
	}
}

// TestAdv27SectionOfGrowingFile: a section of a file that grows while
// the copy waits for its destination (the size the engine read when the
// copy started is stale by then) is copied up to its limit, with the
// bytes written since, as io.Copy copies them; one of a file truncated
// meanwhile ends at the new end, with the file's bytes.
func TestAdv27SectionOfGrowingFile(t *testing.T) {
	for _, backend := range []Backend{BackendIOUring, BackendSplice} {
		for _, grow := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s,grow=%v", backend, grow), func(t *testing.T) {
				e, err := NewEngine(WithBackend(backend))
				if err != nil {
					t.Skipf("backend %s: %v", backend, err)
				}
				t.Cleanup(func() { e.Close() })
				adv27Busy(t, e)
				const off, n = 5 << 20, 256 << 10
				data := fdtest.Random(8 << 20)
				first := data[:off+64<<10]
				if !grow {
					first = data
				}
				f := adv27Hot(t, first)
				w, err := os.OpenFile(f.Name(), os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
				if _, err := f.Seek(off, io.SeekStart); err != nil {
					t.Fatal(err)
				}
				a, b := unreadTCP(t)
				lr := &io.LimitedReader{R: f, N: n}
				fut := e.CopyAsync(context.Background(), a, lr)
				isoStalled(t, fut)
				if grow {
					if _, err := w.WriteAt(data[len(first):], int64(len(first))); err != nil {
						t.Fatal(err)
					}
				} else if err := w.Truncate(off + 100<<10); err != nil {
					t.Fatal(err)
				}
				b.SetReadBuffer(4 << 20) // drain at speed now
				a.SetWriteBuffer(4 << 20)
				got := make(chan []byte)
				go func() {
					bs, _ := io.ReadAll(b)
					got <- bs
				}()
				isoWait(t, fut.Done(), "the section's copy")
				m, err := fut.Wait()
				a.Close()
				bs := <-got
				want := int64(n)
				if !grow {
					want = 100 << 10
				}
				if err != nil || m != want || !bytes.Equal(bs, data[off:off+want]) {
					t.Errorf("copy = (%d, %v), %d bytes arrived (the file's: %v); want %d", m, err, len(bs), bytes.Equal(bs, data[off:off+int64(len(bs))]), want)
				}
			})
		}
	}
}
