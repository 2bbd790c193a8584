//go:build linux

package splice

import (
	"errors"
	"math"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestNewPipeHugeSize: a size beyond what F_SETPIPE_SZ takes (an
// unsigned int, at most 2 GiB) keeps the kernel's default size, as any
// size the kernel refuses does, instead of being truncated to 32 bits
// (4 GiB + 4 KiB asked for 4 KiB, and 1 TiB for 4 KiB: the smallest
// pipe).
func TestNewPipeHugeSize(t *testing.T) {
	if strconv.IntSize < 64 {
		t.Skip("sizes above 2 GiB do not fit in an int here")
	}
	fdtest.Check(t)
	def, err := NewPipe(0)
	if err != nil {
		t.Fatal(err)
	}
	want := def.Size()
	def.Close()
	for _, size := range []int64{1<<31 + 1, 1<<32 + 4096, 1 << 40, math.MaxInt64} {
		p, err := NewPipe(int(size))
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Size(); got != want {
			t.Errorf("NewPipe(%d): Size %d, want the default %d", size, got, want)
		}
		p.Close()
	}
}

// TestNegativeCounts: Splice and Tee refuse a negative count with EINVAL
// instead of passing it to the kernel, which reads it as a huge size_t
// and moves what there is; ReadMark refuses it instead of panicking. The
// count that comes with an error is 0.
func TestNegativeCounts(t *testing.T) {
	fdtest.Check(t)
	a, b := twoPipes(t)
	if _, err := unix.Write(a.WriteFd(), []byte("abc")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() (int, error)
	}{
		{"Splice", func() (int, error) { return Splice(a.ReadFd(), nil, b.WriteFd(), nil, -1, FlagNonblock) }},
		{"Tee", func() (int, error) { return Tee(a.ReadFd(), b.WriteFd(), -1, FlagNonblock) }},
		{"ReadMark", func() (int, error) { return ReadMark(a.ReadFd(), b.WriteFd(), -1) }},
		// The kernel's own EINVAL: the count is 0 with it, not -1.
		{"Tee of a pipe into itself", func() (int, error) { return Tee(a.ReadFd(), a.WriteFd(), 3, FlagNonblock) }},
		{"Splice of two pipe ends the wrong way", func() (int, error) { return Splice(a.WriteFd(), nil, b.ReadFd(), nil, 3, FlagNonblock) }},
	} {
		n, err := tc.call()
		if n != 0 || !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EBADF) {
			t.Errorf("%s = %d, %v; want 0, EINVAL (or EBADF)", tc.name, n, err)
		}
	}
	if n := a.inKernel(); n != 3 {
		t.Errorf("source pipe holds %d bytes after the calls, want 3 untouched", n)
	}
	if n := b.inKernel(); n != 0 {
		t.Errorf("destination pipe holds %d bytes after the calls, want 0", n)
	}
}
