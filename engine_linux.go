package pipes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/ctxerr"
	"github.com/pipes-go/pipes/internal/uring"
	"github.com/pipes-go/pipes/splice"
)

// sysEngine is the Linux part of an Engine: the pipe pool shared by every
// copy and, on the io_uring backend, the ring.
type sysEngine struct {
	cfg  *config
	st   *counters
	pool *splice.Pool
	ring *uring.Driver // nil on the splice backend

	// fileCopies counts the copies from regular files running now; the
	// ring takes new ones once there are more than cfg.ringMinConcurrency.
	fileCopies atomic.Int64
}

// newSysEngine sets up the engine's pipe pool and, unless cfg asks for
// the splice backend, its ring. noRing is why an auto engine is not on
// io_uring (nil when it is, or when splice was asked for): the setup
// error, explained by ringSetupErr.
func newSysEngine(cfg *config, st *counters) (s *sysEngine, b Backend, noRing, err error) {
	s = &sysEngine{cfg: cfg, st: st, pool: splice.NewPool(cfg.pipeSize, cfg.maxPipes)}
	if cfg.backend == BackendSplice {
		return s, BackendSplice, nil, nil
	}
	r, err := newRing(cfg, st, s.pool)
	if err != nil {
		if cfg.backend == BackendIOUring {
			s.pool.Close()
			return nil, "", nil, fmt.Errorf("pipes: io_uring backend: %w: %w", errors.ErrUnsupported, ringSetupErr(err))
		}
		return s, BackendSplice, ringSetupErr(err), nil
	}
	s.ring = r
	return s, BackendIOUring, nil, nil
}

// newRing sets up the engine's io_uring driver as cfg asks, sharing pool.
func newRing(cfg *config, st *counters, pool *splice.Pool) (*uring.Driver, error) {
	if cfg.setupHook != nil {
		if err := cfg.setupHook(); err != nil {
			return nil, err
		}
	}
	return uring.New(uring.Config{
		Entries:        cfg.ringEntries,
		SQPoll:         cfg.sqPoll,
		IOWQMaxWorkers: cfg.iowqMaxWorkers,
		Pool:           pool,
		Closed:         ErrClosed,
	}, &st.ringOps)
}

// ringSetupErr adds to an io_uring setup error the name of its errno and
// what usually causes it there, for Stats.RingSetup and logs. It still
// wraps err (errors.Is(err, syscall.EPERM)).
func ringSetupErr(err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err
	}
	name := unix.ErrnoName(errno)
	if name == "" {
		name = "errno " + strconv.Itoa(int(errno))
	}
	switch errno {
	case unix.EPERM:
		name += ": kernel.io_uring_disabled or a seccomp filter"
	case unix.ENOSYS:
		name += ": a kernel without io_uring, or a seccomp filter"
	case unix.ENOMEM:
		name += ": RLIMIT_MEMLOCK too low for the ring (before Linux 5.12), or out of memory"
	}
	return fmt.Errorf("%w (%s)", err, name)
}

func (s *sysEngine) close() error {
	var err error
	if s.ring != nil {
		err = s.ring.Close()
	}
	return errors.Join(err, s.pool.Close())
}

// poolStats fills in the pipe pool's part of st.
func (s *sysEngine) poolStats(st *Stats) {
	ps := s.pool.Stats()
	st.Pipes, st.PoolWaits, st.PoolExhausted = ps.Alive, ps.Waits, ps.Exhausted
}

// copyFD copies with splice(2) or the ring when both sides have a file
// descriptor the kernel can splice, and then returns inKernel. Where it
// cannot it moves nothing and returns why (fallbackNoFD, ...); the caller
// then copies in userspace. w and r are the caller's values; dst and src
// their endpoints.
func (s *sysEngine) copyFD(ctx context.Context, life *lifetime, w io.Writer, r io.Reader, limit int64, m *meter, pacer *Limiter) (int64, fallback, error) {
	src, ok := readerEndpoint(r)
	if !ok {
		return 0, fallbackNoFD, nil
	}
	if pr, ok := r.(*PipeReader); ok && pr.awaitWriter.Load() {
		// A fifo opened read-only without a writer yet reads as EOF:
		// wait for its first writer, as PipeReader.Read does.
		stop := interruptOnDone(ctx, nil, pr)
		err := pr.awaitFirstWriter()
		stop()
		if err != nil {
			if ctx.Err() != nil {
				err = ctxerr.Wrap("pipes", ctx, err)
			}
			return 0, inKernel, err
		}
	}
	dst, ok := writerEndpoint(w)
	if !ok {
		return 0, fallbackNoFD, nil
	}
	dst.meter = m
	if pacer != nil {
		src.pacer = pacer
	}
	if src.kind == kindFile && dst.kind == kindFile && isOSFile(r) && isOSFile(w) {
		// io.Copy between two *os.File uses copy_file_range(2), which
		// beats file -> pipe -> file (it may even share extents).
		return 0, fallbackFileToFile, nil
	}
	if s.ring != nil && src.kind == kindFile && pacer == nil {
		// Not a paced copy: it waits for its Limiter between splices,
		// and would hold a ring chain's pipe meanwhile.
		// Copy and CopyAsync alike: a file server calling Copy from a
		// thousand handlers has the same cold reads to bound.
		running := s.fileCopies.Add(1)
		defer s.fileCopies.Add(-1)
		if min := s.cfg.ringMinConcurrency; min >= 0 && running > int64(min) {
			if n, handled, err := s.ringCopy(ctx, w, dst, src, limit); handled {
				s.st.ring.Add(1)
				return n, inKernel, err
			}
		}
	}
	// splice.Copy and splice.Sendfile wait on the netpoller: when ctx
	// ends, deadlines in the past on the caller's values wake them.
	defer life.interrupt(ctx, w, r).stop()
	if src.kind == kindFile && dst.kind == kindSocket {
		// sendfile(2): one system call per chunk where file -> pipe ->
		// socket needs two; see docs/benchmarks.md.
		n, handled, err := splice.Sendfile(ctx, dst.end(), src.end(), limit)
		if handled {
			s.st.sendfile.Add(1)
			return n, inKernel, err
		}
	}
	n, handled, err := splice.Copy(ctx, dst.end(), src.end(), limit, s.pool)
	if !handled {
		// EINVAL, ENOSYS or EOPNOTSUPP before any byte, an O_APPEND
		// destination: nothing moved.
		return n, fallbackRefused, err
	}
	s.st.spliceLoop.Add(1)
	return n, inKernel, err
}

// ringCopy runs a copy from a regular file through the ring: wholly, as
// linked chains, to a stream socket; else its reads that miss the page
// cache. handled is false, with nothing moved, where the ring does not
// pay: a copy to a socket whose next chunk is in the page cache (sendfile
// then), or a pair the kernel cannot splice. w is the caller's
// destination, whose waits interruptOnDone wakes.
func (s *sysEngine) ringCopy(ctx context.Context, w io.Writer, dst, src endpoint, limit int64) (int64, bool, error) {
	file := uring.File{Conn: src.conn, Size: src.size}
	if dst.kind != kindSocket {
		interrupt := func() func() { return interruptOnDone(ctx, w, nil) }
		return s.ring.CopyReads(ctx, dst.end(), file, limit, interrupt)
	}
	if cachedAhead(src, limit, s.cfg.pipeSize) {
		return 0, false, nil
	}
	return s.ring.CopyLinked(ctx, dst.end(), file, limit)
}

// cachedAhead reports whether the next max bytes a copy from the file src
// has to move (fewer at the end of the file or limit, if >= 0) are in the
// page cache. Such a copy goes to a socket with sendfile(2), which then
// does not block: with a real client (examples/bench.sh) ring chains
// cost throughput and CPU against sendfile, paying io-wq hand-offs for
// every short write to a socket its reader drains slowly
// (docs/benchmarks.md, "Figures quoted in the code"). The ring keeps the
// copies that would block on the disk.
func cachedAhead(src endpoint, limit int64, max int) bool {
	var cached bool
	src.conn.Control(func(fd uintptr) {
		off, err := unix.Seek(int(fd), 0, io.SeekCurrent)
		if err != nil {
			return
		}
		n := min(src.size-off, int64(max))
		if limit >= 0 {
			n = min(n, limit)
		}
		cached = n <= 0 || uring.PageCached(int(fd), off, int(n))
	})
	return cached
}

func isOSFile(v any) bool {
	_, ok := v.(*os.File)
	return ok
}
