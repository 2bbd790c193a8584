// Package ctxerr builds the errors of operations ended by their context.
package ctxerr

import (
	"context"
	"errors"
	"fmt"
)

// Wrap returns the error of an operation named op that ended because ctx
// did, err being what the operation itself met (nil if nothing). The
// result matches ctx.Err() and context.Cause(ctx) with errors.Is, and err
// too: a cancel with a cause of the caller's own still satisfies
// errors.Is(err, context.Canceled). An err that already matches ctx.Err()
// (a reader that returned ctx.Err(), say) is returned as it is if it
// matches the cause too, and with the cause added if not. Wrap must be
// called only once ctx is done.
func Wrap(op string, ctx context.Context, err error) error {
	cerr := ctx.Err()
	cause := context.Cause(ctx)
	if err != nil && errors.Is(err, cerr) {
		if cause == cerr || errors.Is(err, cause) {
			return err
		}
		return fmt.Errorf("%w (%w)", err, cause)
	}
	switch {
	case err == nil && cause == cerr:
		return fmt.Errorf("%s: %w", op, cerr)
	case err == nil:
		return fmt.Errorf("%s: %w: %w", op, cerr, cause)
	case cause == cerr:
		return fmt.Errorf("%s: %w (%w)", op, cerr, err)
	}
	return fmt.Errorf("%s: %w: %w (%w)", op, cerr, cause, err)
}
