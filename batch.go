package pipes

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Pair is one copy of a CopyBatch: everything Src yields goes to Dst.
type Pair struct {
	Dst io.Writer
	Src io.Reader
}

// CopyBatch runs many independent copies at once with DefaultEngine; see
// (*Engine).CopyBatch.
func CopyBatch(ctx context.Context, pairs []Pair) []Result {
	return DefaultEngine().CopyBatch(ctx, pairs)
}

// CopyBatch starts one copy per pair, all at once, waits for every one,
// and returns their results in the order of pairs. Each copy has the
// semantics of CopyAsync (and so of io.Copy): Written counts the bytes
// that reached Dst and Err is nil at EOF on Src, else the first error
// (wrapping the errno: errors.Is(err, syscall.EPIPE), syscall.ECONNRESET).
// The copies are independent: one failing does not stop the others.
//
// The copies share the engine: on the io_uring backend, the reads of
// regular files of copies running together that miss the page cache are
// submitted to the ring in shared io_uring_enter calls (Stats reports SQEs and Enters), and all of
// them share its bounded pool of intermediate pipes, which is what bounds
// the kernel memory a large batch uses.
//
// Cancelling ctx (or closing the engine) stops every copy not yet done;
// its Err then satisfies errors.Is(err, ctx.Err()) (ErrClosed after
// Close). A pair with a nil Dst or Src fails with an error of its own
// without disturbing the others. CopyBatch never closes a Dst or Src; two
// pairs must not share a Src or a Dst unless it is safe for concurrent
// use. If a pair's Read or Write panics, CopyBatch stops the other
// copies, waits for them, and panics with that value in the calling
// goroutine, as io.Copy would (the copies run in goroutines of their
// own).
func (e *Engine) CopyBatch(ctx context.Context, pairs []Pair) []Result {
	if ctx == nil {
		ctx = context.Background()
	}
	// A panic in one copy ends the others: the batch raises it, and
	// their results would be lost anyway.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	caught := func() { cancel(errBatchPanicked) }
	res := make([]Result, len(pairs))
	futures := make([]*Future, len(pairs))
	for i, p := range pairs {
		switch {
		case isNil(p.Dst):
			res[i].Err = fmt.Errorf("pipes: batch pair %d: %w", i, errNilDestination)
		case isNil(p.Src):
			res[i].Err = fmt.Errorf("pipes: batch pair %d: %w", i, errNilSource)
		default:
			futures[i] = e.copyAsync(ctx, p.Dst, p.Src, caught)
		}
	}
	var panicked any
	for i, f := range futures {
		if f != nil {
			res[i].Written, res[i].Err = f.Wait()
			if panicked == nil {
				panicked = f.panic
			}
		}
	}
	if panicked != nil {
		panic(panicked)
	}
	return res
}

// errBatchPanicked is the cause the copies of a CopyBatch are stopped
// with when one of them panicked. No caller sees it: the batch panics.
var errBatchPanicked = errors.New("pipes: batch: a copy's Read or Write panicked")
