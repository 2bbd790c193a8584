package ctxerr

import (
	"context"
	"errors"
	"io"
	"testing"
)

func TestWrap(t *testing.T) {
	errCause := errors.New("shutting down")
	for _, tc := range []struct {
		name  string
		cause error // nil: plain cancel
		err   error
		want  []error
	}{
		{"plain", nil, nil, []error{context.Canceled}},
		{"plain with err", nil, io.ErrUnexpectedEOF, []error{context.Canceled, io.ErrUnexpectedEOF}},
		{"cause", errCause, nil, []error{context.Canceled, errCause}},
		{"cause with err", errCause, io.ErrUnexpectedEOF, []error{context.Canceled, errCause, io.ErrUnexpectedEOF}},
		{"err already ctx", nil, context.Canceled, []error{context.Canceled}},
		// A reader that returned ctx.Err() (no cause in it): the cause
		// is added.
		{"err already ctx, cause", errCause, context.Canceled, []error{context.Canceled, errCause}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			cancel(tc.cause)
			got := Wrap("op", ctx, tc.err)
			for _, w := range tc.want {
				if !errors.Is(got, w) {
					t.Errorf("Wrap = %v; errors.Is(_, %v) = false", got, w)
				}
			}
		})
	}
}
