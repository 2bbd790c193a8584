package pipes

import (
	"context"
	"errors"
	"io"
	"sync"
)

// Backend names the kernel mechanism an Engine uses for the copies that
// can be batched.
type Backend string

const (
	// BackendIOUring has io_uring (Linux 5.7+ for IORING_OP_SPLICE) read
	// in what concurrent copies from regular files would otherwise wait
	// for the disk for, on an OS thread each: IORING_OP_READ ahead of
	// sendfile(2) to a stream socket, IORING_OP_SPLICE for the reads that
	// miss the page cache of a copy to anything else (see
	// WithRingMinConcurrency). Every other copy of an io_uring engine
	// runs as on BackendSplice.
	BackendIOUring Backend = "io_uring"
	// BackendSplice runs every copy with splice(2) and tee(2), or
	// sendfile(2) from a regular file to a stream socket, waiting for
	// readiness on the Go netpoller.
	BackendSplice Backend = "splice"
	// BackendUserspace copies through a userspace buffer (io.Copy): the
	// only backend on operating systems without splice(2). There
	// WithBackend(BackendSplice) and PIPES_BACKEND=splice (asking for no
	// io_uring) give it too; BackendIOUring is refused.
	BackendUserspace Backend = "userspace"
)

// backendAuto asks NewEngine to pick: io_uring when it works and offers
// IORING_OP_SPLICE, else splice.
const backendAuto Backend = "auto"

// ErrClosed is returned by the copy methods of an Engine after Close.
var ErrClosed = errors.New("pipes: engine closed")

var defaultEngine struct {
	once sync.Once
	e    *Engine
}

// DefaultEngine returns the engine used by the package-level Copy and
// CopyAsync, building it on first use with NewEngine() (so PIPES_BACKEND
// applies). If that fails, for example because PIPES_BACKEND=io_uring on a
// kernel that refuses io_uring, every copy through the returned engine
// fails with the error NewEngine gave. Closing the default engine makes
// later package-level copies fail with ErrClosed.
func DefaultEngine() *Engine {
	defaultEngine.once.Do(func() {
		e, err := NewEngine()
		if err != nil {
			e = brokenEngine(err)
		}
		defaultEngine.e = e
	})
	return defaultEngine.e
}

// Copy copies from src to dst until EOF on src or an error, and returns the
// number of bytes copied and the first error met, exactly as io.Copy does.
// A successful Copy returns err == nil, not io.EOF.
//
// Copy moves the bytes inside the kernel when both sides have a file
// descriptor (regular files, pipes, fifos, TCP and unix stream sockets,
// *PipeReader, *PipeWriter, and anything implementing syscall.Conn), and
// copies through a userspace buffer otherwise. A *io.LimitedReader src is
// honoured: at most N bytes are copied and N is decreased by the bytes
// taken from src, which are the bytes copied but where a write failed
// after a read (between two *os.File on different file systems, as
// io.Copy leaves it). A src or dst that is nil or holds a nil pointer (a
// nil *net.TCPConn, say, on which io.Copy panics) fails with an error
// wrapping os.ErrInvalid, as io.Copy fails on a nil *os.File, with
// nothing copied. Copy uses DefaultEngine.
//
// From a regular file the kernel moves references to the file's
// page-cache pages, not copies: when dst is a pipe or fifo, its reader
// sees the file as it is when it reads, so a later write to the file (or
// a truncate, which reads as zeros) shows through. io.Copy behaves so
// for sockets (sendfile) but copies into pipes. For a snapshot, hide the
// file's descriptor: Copy(dst, struct{ io.Reader }{f}) copies through a
// buffer, at io.Copy's cost.
func Copy(dst io.Writer, src io.Reader) (written int64, err error) {
	return DefaultEngine().Copy(dst, src)
}

// CopyAsync starts copying from src to dst and returns at once. The
// returned Future reports the result of the copy, which has the semantics
// of Copy. Cancelling ctx stops the copy: Wait then returns the bytes
// delivered to dst so far and an error for which errors.Is(err, ctx.Err())
// holds. To interrupt a copy waiting on a socket or pipe, cancellation sets
// a deadline in the past on src and dst (where they have deadlines) and
// clears it when the copy has returned: a deadline set on them before the
// copy does not survive a cancelled copy. CopyAsync uses DefaultEngine.
func CopyAsync(ctx context.Context, dst io.Writer, src io.Reader) *Future {
	return DefaultEngine().CopyAsync(ctx, dst, src)
}

// CopyContext copies from src to dst in the calling goroutine, with the
// semantics of CopyAsync(ctx, dst, src).Wait(): it returns the bytes
// delivered to dst and nil at EOF on src, or the first error; when ctx
// ends first, errors.Is(err, ctx.Err()) holds (and errors.Is(err, cause)
// for a cause given to context.WithCancelCause). Waits are interrupted
// as for CopyAsync, with deadlines in the past that are cleared when the
// copy returns. CopyContext uses DefaultEngine.
func CopyContext(ctx context.Context, dst io.Writer, src io.Reader) (written int64, err error) {
	return DefaultEngine().CopyContext(ctx, dst, src)
}
