//go:build !linux || pipes_portable

package pipes

import "context"

// newCopierFan returns the userspace fan-out for a Copier reading r: off
// Linux there is no tee(2).
func newCopierFan(ctx context.Context, r *PipeReader) (copierFan, error) {
	if _, err := r.SyscallConn(); err != nil {
		return nil, err
	}
	return newUserspaceCopierFan(ctx, r), nil
}
