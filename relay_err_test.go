package pipes

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/pipes-go/pipes/internal/ctxerr"
)

// TestRelayFailLockedKeeps: which error a relay reports when its two
// directions fail one after the other. The second direction's error
// often ends after the first has cancelled the relay, and then carries
// the first as its context's cause and the cancellation: that must
// neither hide what the second met itself (a timeout reported as the
// first's reset) nor let a bare cancellation replace the first, and
// what replaces the first is what the second met, without them.
func TestRelayFailLockedKeeps(t *testing.T) {
	opErr := func(op string, errno syscall.Errno) error {
		return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, errno)}
	}
	closeWriteErr := dirErr(dirAToB, opErr("shutdown", syscall.ENOTCONN))
	for _, tc := range []struct {
		name   string
		first  error
		own    error // what the second direction met; nil: only the cancel
		cancel bool  // the second ended after the first's cancel
		want   error // the second replaces the first, or (nil) not
	}{
		{"aborted, then a timeout after the cancel", dirErr(dirBToA, errAborted), opErr("write", syscall.ETIMEDOUT), true, syscall.ETIMEDOUT},
		{"aborted, then EPIPE after the cancel", dirErr(dirBToA, errAborted), opErr("write", syscall.EPIPE), true, syscall.EPIPE},
		{"aborted, then a reset before the cancel", dirErr(dirBToA, errAborted), opErr("write", syscall.ECONNRESET), false, syscall.ECONNRESET},
		{"aborted, then only the cancel", dirErr(dirBToA, errAborted), nil, true, nil},
		{"aborted, then ENOTCONN", dirErr(dirBToA, errAborted), opErr("shutdown", syscall.ENOTCONN), true, nil},
		{"ENOTCONN, then a reset after the cancel", closeWriteErr, opErr("read", syscall.ECONNRESET), true, syscall.ECONNRESET},
		{"ENOTCONN, then only the cancel", closeWriteErr, nil, true, nil},
		{"a reset, then a timeout", dirErr(dirBToA, opErr("read", syscall.ECONNRESET)), opErr("write", syscall.ETIMEDOUT), true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &relay{}
			r.ctx, r.cancel = context.WithCancelCause(context.Background())
			defer r.cancel(nil)
			r.failLocked(noDir, tc.first)
			second := tc.own
			if tc.cancel {
				second = ctxerr.Wrap("pipes", r.ctx, tc.own)
			}
			r.failLocked(dirAToB, second)
			switch {
			case tc.want == nil && r.err != tc.first:
				t.Errorf("relay error %v; want the first, %v", r.err, tc.first)
			case tc.want == nil:
			case r.err == tc.first:
				t.Errorf("relay error %v; want the second's, %v", r.err, tc.want)
			case !errors.Is(r.err, tc.want) || r.err.Error() != dirErr(dirAToB, tc.own).Error():
				t.Errorf("relay error %v; want %v, from %s", r.err, tc.own, relayDirNames[dirAToB])
			case errors.Is(r.err, context.Canceled):
				// The caller's ctx never ended: errors.Is(err,
				// context.Canceled) is how a caller tells its own
				// cancel.
				t.Errorf("relay error %v matches context.Canceled", r.err)
			case tc.want != syscall.ECONNRESET && errors.Is(r.err, syscall.ECONNRESET):
				t.Errorf("relay error %v still carries the first's reset", r.err)
			}
		})
	}
}
