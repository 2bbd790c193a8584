//go:build !pipes_portable

package pipes

import (
	"context"
	"fmt"
	"os"

	"github.com/pipes-go/pipes/internal/fanout"
	"golang.org/x/sys/unix"
)

// newCopierFan returns the kernel fan-out for a Copier reading r. A chunk
// is up to the size of r's pipe and each writer's private pipe is asked
// twice that, so that a writer drains one chunk while the next waits,
// which measured faster than private pipes the size of r's pipe
// (docs/benchmarks.md, "Figures quoted in the code").
func newCopierFan(ctx context.Context, r *PipeReader) (copierFan, error) {
	rc, err := r.SyscallConn()
	if err != nil {
		return nil, err
	}
	size := 0
	if cerr := rc.Control(func(fd uintptr) {
		size, err = unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0)
	}); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, fmt.Errorf("pipes: NewCopier: source is not a pipe: %w", os.NewSyscallError("fcntl", err))
	}
	src, _ := r.endpoint()
	k := fanout.NewKernel(ctx, fanout.Source{Conn: src.Conn, Kind: src.kind, Limit: -1}, fanout.Policy{})
	if err := k.OpenJoinable(2*size, r.idleWatch()); err != nil {
		k.Close()
		return nil, err
	}
	return kernelCopierFan{k}, nil
}

// kernelCopierFan runs a Copier on the kernel fan-out (fanout.Kernel).
type kernelCopierFan struct{ k *fanout.Kernel }

func (f kernelCopierFan) join(d *fanout.Dest, w *PipeWriter) error {
	return f.k.Join(d, fanOutTarget(w))
}

func (f kernelCopierFan) run(src *PipeReader) error {
	defer f.k.Close()
	// A read-only fifo that has had no writer yet reads as EOF: wait for
	// its first writer. An error here recurs at the fan-out's first read.
	src.awaitFirstWriter()
	_, err := f.k.Run()
	return err
}

func (f kernelCopierFan) abort() { f.k.Close() }
