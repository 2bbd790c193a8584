package pipes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"

	"github.com/pipes-go/pipes/splice"
)

// sysEngine is the Linux part of an Engine: the pipe pool shared by every
// copy and, on the io_uring backend, the ring.
type sysEngine struct {
	cfg  *config
	st   *counters
	pool *splice.Pool
	ring *uring // nil on the splice backend

	// fileCopies counts the copies from regular files running now; the
	// ring takes new ones once there are more than cfg.ringMinConcurrency.
	fileCopies atomic.Int64
}

func newSysEngine(cfg *config, st *counters) (*sysEngine, Backend, error) {
	s := &sysEngine{cfg: cfg, st: st, pool: splice.NewPool(cfg.pipeSize, cfg.maxPipes)}
	if cfg.backend == BackendSplice {
		return s, BackendSplice, nil
	}
	r, err := newURing(cfg, st)
	if err != nil {
		if cfg.backend == BackendIOUring {
			s.pool.Close()
			return nil, "", fmt.Errorf("pipes: io_uring backend: %w: %w", errors.ErrUnsupported, err)
		}
		return s, BackendSplice, nil
	}
	s.ring = r
	return s, BackendIOUring, nil
}

func (s *sysEngine) close() error {
	var err error
	if s.ring != nil {
		err = s.ring.close()
	}
	return errors.Join(err, s.pool.Close())
}

func (s *sysEngine) pipes() int {
	return s.pool.Stats().Alive
}

// copyFD copies with splice(2) or the ring when both sides have a file
// descriptor the kernel can splice. handled is false, with nothing moved,
// where it cannot; the caller then copies in userspace.
func (s *sysEngine) copyFD(ctx context.Context, dst io.Writer, src io.Reader, limit int64) (int64, bool, error) {
	se, ok := readerEndpoint(src)
	if !ok {
		return 0, false, nil
	}
	if pr, ok := src.(*PipeReader); ok && pr.awaitWriter.Load() {
		// A fifo opened read-only without a writer yet reads as EOF:
		// wait for its first writer, as PipeReader.Read does.
		stop := interruptOnDone(ctx, nil, pr)
		err := pr.awaitFirstWriter()
		stop()
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
			}
			return 0, true, err
		}
	}
	de, ok := writerEndpoint(dst)
	if !ok {
		return 0, false, nil
	}
	if se.kind == kindFile && de.kind == kindFile && isOSFile(src) && isOSFile(dst) {
		// io.Copy between two *os.File uses copy_file_range(2), which
		// beats file -> pipe -> file (it may even share extents).
		return 0, false, nil
	}
	if s.ring != nil && se.kind == kindFile {
		// Copy and CopyAsync alike: a file server calling Copy from a
		// thousand handlers has the same cold reads to bound.
		running := s.fileCopies.Add(1)
		defer s.fileCopies.Add(-1)
		if min := s.cfg.ringMinConcurrency; min >= 0 && running > int64(min) {
			n, handled, err := s.ring.copy(ctx, dst, de, se, limit, s.pool)
			if handled {
				s.st.ring.Add(1)
				return n, true, err
			}
		}
	}
	if f, ok := src.(*os.File); ok && se.kind == kindFile {
		if _, ok := dst.(*net.TCPConn); ok {
			s.st.sendfile.Add(1)
			n, err := sendfileCopy(ctx, dst, f, limit)
			return n, true, err
		}
	}
	n, handled, err := splice.Copy(ctx, de.end(), se.end(), limit, s.pool)
	if handled {
		s.st.splice.Add(1)
	}
	return n, handled, err
}

// sendfileChunk is how much sendfileCopy sends between two checks of ctx.
const sendfileChunk = 4 << 20

// sendfileCopy copies a regular file to a TCP socket with Go's own
// sendfile(2) path (io.Copy into *net.TCPConn with an *io.LimitedReader
// of the file): one system call per chunk where file -> pipe -> socket
// needs two. Measured here: 1.5x the splice loop for 64 KiB copies, and
// equal or better for a single large one (docs/benchmarks.md). The chunks
// bound how long a cancelled copy goes on; a full socket is woken through
// its write deadline.
func sendfileCopy(ctx context.Context, dst io.Writer, f *os.File, limit int64) (written int64, err error) {
	if ctx.Done() != nil {
		defer interruptOnDone(ctx, dst, nil)()
	}
	for limit < 0 || written < limit {
		if ctx.Err() != nil {
			return written, fmt.Errorf("sendfile: %w", context.Cause(ctx))
		}
		n := int64(sendfileChunk)
		if limit >= 0 && limit-written < n {
			n = limit - written
		}
		m, err := io.Copy(dst, &io.LimitedReader{R: f, N: n})
		written += m
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
			}
			return written, err
		}
		if m < n {
			return written, nil // EOF
		}
	}
	return written, nil
}

func isOSFile(v any) bool {
	_, ok := v.(*os.File)
	return ok
}
