//go:build linux

package splice

import (
	"math"
	"strconv"
	"testing"

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
