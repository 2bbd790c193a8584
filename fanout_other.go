//go:build !linux || pipes_portable

package pipes

import (
	"context"
	"io"

	"github.com/pipes-go/pipes/internal/fanout"
)

// fanOutKernel has no kernel path off Linux (no tee(2)): FanOut always
// copies through userspace buffers there.
func (e *Engine) fanOutKernel(context.Context, io.Reader, int64, *Limiter, []*fanout.Dest, fanout.Policy, *int64) fallback {
	return fallbackNoFD
}

// blockingSource returns src and false: off Linux, a source in blocking
// mode is not wrapped (see fanout_blocking_linux.go).
func blockingSource(_ context.Context, src io.Reader) (io.Reader, bool) { return src, false }

// blockingDest returns w: off Linux, a destination in blocking mode is
// not wrapped (see fanout_blocking_linux.go).
func blockingDest(w io.Writer) io.Writer { return w }
