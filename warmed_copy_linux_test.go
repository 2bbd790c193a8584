//go:build !pipes_portable

package pipes

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Copies of cold files into sockets, several at once (the ring's Warmer
// paces them), from offsets and under limits that end mid-page; and of
// files whose pages the page cache never shows, which no Warmer reads.

// TestWarmedCopyOffsetsAndLimits: three copies at once of each of
// several cuts of one cold file, each through its own *os.File, into
// TCP: from an offset mid-page, under an *io.LimitedReader whose limit
// ends mid-page, of a few bytes, from the end, and of none. Each peer
// gets exactly io.Copy's bytes, and each file's offset ends past them.
func TestWarmedCopyOffsetsAndLimits(t *testing.T) {
	const size = 6<<20 + 1234
	data := fdtest.Random(size)
	paths := dataFiles(t, 1, data)
	cases := []struct {
		name     string
		off, lim int64 // lim < 0: no *io.LimitedReader
	}{
		{"whole", 0, -1},
		{"from mid-page", 12345, -1},
		{"limit mid-page", 777, 1<<20 + 100},
		{"three bytes", 4095, 3},
		{"from the end", size, -1},
		{"limit 0", 5, 0},
	}
	for _, ec := range engineCases(t) {
		t.Run(ec.name, func(t *testing.T) {
			e := newTestEngine(t, ec.opts...)
			evictAll(t, paths)
			// Open the files and connect the peers first, on the
			// test's goroutine, which alone may end the test.
			type copyJob struct {
				f         *os.File
				dst, peer *net.TCPConn
			}
			jobs := make([][]copyJob, len(cases))
			for i, c := range cases {
				for range 3 {
					f := openPath(t, paths[0], os.O_RDONLY)
					if _, err := f.Seek(c.off, io.SeekStart); err != nil {
						t.Fatal(err)
					}
					dst, peer := tcpPair(t)
					jobs[i] = append(jobs[i], copyJob{f, dst, peer})
				}
			}
			var wg sync.WaitGroup
			for i, c := range cases {
				for _, j := range jobs[i] {
					wg.Add(1)
					go func() {
						defer wg.Done()
						var src io.Reader = j.f
						want := data[c.off:]
						if c.lim >= 0 {
							src = &io.LimitedReader{R: j.f, N: c.lim}
							want = want[:min(int64(len(want)), c.lim)]
						}
						got, err := copyToPeer(t, e.Copy, src, j.dst, j.peer)
						if err != nil || !bytes.Equal(got, want) {
							t.Errorf("%s: the peer got %d bytes (same: %v), err %v; want io.Copy's %d",
								c.name, len(got), bytes.Equal(got, want), err, len(want))
						}
						if off, _ := j.f.Seek(0, io.SeekCurrent); off != c.off+int64(len(want)) {
							t.Errorf("%s: the file's offset ends at %d; want %d", c.name, off, c.off+int64(len(want)))
						}
					}()
				}
			}
			wg.Wait()
		})
	}
}

// TestCopyFilesUnseenByCachestat: two copies at once into TCP of files
// whose pages cachestat(2) never counts: a sysfs binary attribute, a
// procfs file, a sparse tmpfs file and a file on overlayfs read whole
// before. The peers get the file's bytes, and no chunk of them is read
// in by the ring (Stats.Warmed): each would be found missing for good,
// and read twice more through the ring before each send.
func TestCopyFilesUnseenByCachestat(t *testing.T) {
	const size = 9 << 20
	cases := []struct {
		name string
		path func(t *testing.T) string
	}{
		{"sysfs", func(*testing.T) string { return "/sys/kernel/btf/vmlinux" }},
		{"procfs", func(*testing.T) string { return "/proc/config.gz" }},
		{"tmpfs sparse", func(t *testing.T) string {
			path := fdtest.SparseTmpfsFile(t, size)
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write([]byte("head")); err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte("tail"), size-4); err != nil {
				t.Fatal(err)
			}
			return path
		}},
		{"overlayfs", func(t *testing.T) string {
			return filepath.Join(fdtest.Overlay(t, fdtest.Random(size)), "data")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := c.path(t)
			want, err := os.ReadFile(path)
			if err != nil {
				t.Skip(err)
			}
			e := newTestEngine(t, WithRingMinConcurrency(0))
			if e.Backend() != BackendIOUring {
				t.Skip("no ring")
			}
			// Open the files and connect the peers first, on the
			// test's goroutine, which alone may end the test.
			var srcs [2]*os.File
			var dsts, peers [2]*net.TCPConn
			for i := range srcs {
				srcs[i] = openPath(t, path, os.O_RDONLY)
				dsts[i], peers[i] = tcpPair(t)
			}
			var wg sync.WaitGroup
			for i := range srcs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got, err := copyToPeer(t, e.Copy, srcs[i], dsts[i], peers[i])
					if err != nil || !bytes.Equal(got, want) {
						t.Errorf("the peer got %d bytes (same: %v), err %v; want %d", len(got), bytes.Equal(got, want), err, len(want))
					}
				}()
			}
			wg.Wait()
			if n := e.Stats().Warmed; n != 0 {
				t.Errorf("the ring read %d chunks in; want none", n)
			}
		})
	}
}
