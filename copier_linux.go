package pipes

import (
	"context"
	"fmt"
	"os"

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
	k := newKfan(ctx, &fanOutConfig{}, src, -1)
	if err := k.openJoinable(2 * size); err != nil {
		k.close()
		return nil, err
	}
	return &kernelCopierFan{k: k, r: r}, nil
}

// kernelCopierFan runs a Copier on the kernel fan-out (kfan).
type kernelCopierFan struct {
	k *kfan
	r *PipeReader
}

func (f *kernelCopierFan) join(d *fanDest) error { return f.k.join(d) }

func (f *kernelCopierFan) run() error {
	defer f.k.close()
	// A read-only fifo that has had no writer yet reads as EOF: wait for
	// its first writer. An error here recurs at the fan-out's first read.
	stop := interruptOnDone(f.k.ctx, nil, f.r)
	f.r.awaitFirstWriter()
	stop()
	_, err := f.k.run(f.r)
	return err
}

func (f *kernelCopierFan) abort() { f.k.close() }
