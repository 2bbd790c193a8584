//go:build !pipes_portable

package pipes

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
	"golang.org/x/sys/unix"
)

// TestCopierSourcePipeSizes: the chunk and private pipe sizes follow the
// source pipe's size (one page, the default, pipe-max-size); every writer
// receives every byte, whatever the kernel grants.
func TestCopierSourcePipeSizes(t *testing.T) {
	fdtest.Check(t)
	data := copierData(3<<20 + 1)
	for _, size := range []int{4096, 64 << 10, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			src, in := ptNewPipe(t)
			rc, err := src.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var got int
			rc.Control(func(fd uintptr) {
				if _, err = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, size); err == nil {
					got, err = unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0)
				}
			})
			if err != nil {
				t.Skipf("F_SETPIPE_SZ %d: %v", size, err)
			}
			var sinks []*copierSinkT
			var ws []*PipeWriter
			for range 3 {
				s := newCopierSinkT(t, -1)
				sinks, ws = append(sinks, s), append(ws, s.w)
			}
			c, err := NewCopier(context.Background(), src, ws...)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				in.Write(data)
				in.Close()
			}()
			if err := c.Wait(); err != nil {
				t.Fatalf("Wait: %v", err)
			}
			for i, s := range sinks {
				checkSame(t, fmt.Sprintf("source pipe of %d bytes: writer %d", got, i), s.finish(), data)
			}
		})
	}
}

// TestCopierFifoFirstWriter: a fifo opened read-only before any writer
// has connected reads as EOF to the kernel; the copier waits for its
// first writer instead of stopping.
func TestCopierFifoFirstWriter(t *testing.T) {
	fdtest.Check(t)
	data := copierData(40<<10 + 3) // fits in the fifo: a copier that stopped cannot block the write
	for _, fan := range copierFans {
		t.Run(fan.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "fifo")
			src, _, err := OpenFifo(path, os.O_RDONLY|os.O_CREATE, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			s := newCopierSinkT(t, -1)
			c, err := fan.start(context.Background(), src, s.w)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond) // a copier that took the EOF would stop now
			_, in, err := OpenFifo(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, in, data)
			in.Close()
			if err := c.Wait(); err != nil {
				t.Fatalf("Wait: %v", err)
			}
			checkSame(t, "writer", s.finish(), data)
		})
	}
}
