//go:build !linux

package pipes

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// sysEngine has no kernel paths off Linux: every copy runs in userspace.
type sysEngine struct{}

func newSysEngine(cfg *config, _ *counters) (*sysEngine, Backend, error) {
	if cfg.backend == BackendIOUring {
		return nil, "", fmt.Errorf("pipes: io_uring backend: %w", errors.ErrUnsupported)
	}
	return &sysEngine{}, BackendUserspace, nil
}

func (*sysEngine) copyFD(context.Context, io.Writer, io.Reader, int64, *meter, *Limiter) (int64, bool, error) {
	return 0, false, nil
}

func (*sysEngine) close() error { return nil }

func (*sysEngine) poolStats(*Stats) {}
