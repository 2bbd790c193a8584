//go:build !unix

package pipes

import (
	"errors"
	"fmt"
	"os"

	"github.com/pipes-go/pipes/internal/fanout"
)

// OpenFifo fails where there are no fifos (Windows): the error wraps
// errors.ErrUnsupported.
func OpenFifo(path string, flag int, mode os.FileMode) (*PipeReader, *PipeWriter, error) {
	return nil, nil, fmt.Errorf("pipes: open fifo %s: %w", path, errors.ErrUnsupported)
}

// AsyncOpenFifo fails where there are no fifos (Windows): the error wraps
// errors.ErrUnsupported.
func AsyncOpenFifo(path string, flag int, mode os.FileMode) (<-chan OpenFifoResult, error) {
	return nil, fmt.Errorf("pipes: open fifo %s: %w", path, errors.ErrUnsupported)
}

func (r *PipeReader) readFifo(p []byte) (int, error) { return r.f.Read(p) }

// idleWatch: where there are no fifos a Copier with no writer does not
// watch its reader (fanout.Watch); it waits for a writer or its context.
func (r *PipeReader) idleWatch() fanout.Watch { return fanout.Watch{} }
