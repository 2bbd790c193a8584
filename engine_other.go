//go:build !linux || pipes_portable

package pipes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
)

// sysEngine has no kernel paths off Linux: every copy runs in userspace.
type sysEngine struct{}

// newSysEngine: off Linux there is no io_uring (noRing says so) and no
// splice(2).
func newSysEngine(cfg *config, _ *counters) (s *sysEngine, b Backend, noRing, err error) {
	if cfg.backend == BackendIOUring {
		return nil, "", nil, fmt.Errorf("pipes: io_uring backend: %w", errors.ErrUnsupported)
	}
	return &sysEngine{}, BackendUserspace, errors.New("no io_uring on " + runtime.GOOS), nil
}

// copyFD never handles a copy off Linux: every one counts as
// Stats.UserspaceNoFD, there being no descriptor the kernel can splice.
func (*sysEngine) copyFD(context.Context, *lifetime, io.Writer, io.Reader, int64, *meter, *Limiter) (int64, fallback, error) {
	return 0, fallbackNoFD, nil
}

func (*sysEngine) close() error { return nil }

func (*sysEngine) poolStats(*Stats) {}

// undelivered is 0: without kernel copies, no copy reads bytes it keeps.
func undelivered(error) int64 { return 0 }
