//go:build !pipes_portable

package pipes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/ctxerr"
	"github.com/pipes-go/pipes/internal/fd"
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
	if cfg.backend == BackendUserspace {
		return nil, "", nil, fmt.Errorf("pipes: userspace backend on Linux (io.Copy is that): %w", errors.ErrUnsupported)
	}
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
		Files:          registeredFiles(),
		WarmChunk:      uring.DefaultWarmChunk,
		CachedSenders:  sendTurns(cfg.sendTurns),
	}, &st.ringOps)
}

// sendTurns is the ring's CachedSenders for WithSendTurns(n).
func sendTurns(n int) int {
	switch {
	case n == 0:
		return runtime.GOMAXPROCS(0)
	case n < 0:
		return 0 // no turns
	}
	return n
}

// registeredFiles is the size of the ring's registered-file table: a
// slot per file pinned at once, that is per ring-reads copy (one pool
// pipe each) and per copy whose chunk or read-ahead the ring is working
// on (one chain each). Pins beyond it are duplicates. It stays within
// half of RLIMIT_NOFILE, which bounds the table.
func registeredFiles() uint32 {
	n := uint64(4096)
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil {
		n = min(n, lim.Cur/2)
	}
	return uint32(n)
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
	st.Pipes, st.PoolExhausted = ps.Alive, ps.Exhausted
}

// copyFD copies with splice(2) or the ring when both sides have a file
// descriptor the kernel can splice, and then returns inKernel. Where it
// cannot it moves nothing and returns why (fallbackNoFD, ...); the caller
// then copies in userspace. w and r are the caller's values.
func (s *sysEngine) copyFD(ctx context.Context, life *lifetime, w io.Writer, r io.Reader, limit int64, m *meter, pacer *Limiter) (int64, fallback, error) {
	var e ends
	if filesFirst(w, r, &e) {
		return 0, fallbackFileToFile, nil
	}
	n, done, err := s.sendfileFirst(ctx, life, w, r, limit, m, pacer, &e)
	if done {
		return n, inKernel, err
	}
	why, err := s.endpoints(ctx, w, r, m, pacer, &e)
	if why != inKernel || err != nil {
		return 0, why, err
	}
	dst, src := &e.dst, &e.src
	if s.ring != nil && src.kind == kindFile && pacer == nil {
		// Not a paced copy: it waits for its Limiter between reads.
		// Copy and CopyAsync alike: a file server calling Copy from a
		// thousand handlers has the same cold reads to bound.
		running := s.fileCopies.Add(1)
		defer s.fileCopies.Add(-1)
		if min := s.cfg.ringMinConcurrency; min >= 0 && running > int64(min) {
			if dst.kind == kindSocket {
				// sendfile(2) sends it, paced by the ring's Warmer.
				if warm := s.warmer(src, limit); warm != nil {
					src.Pacer, src.Gate = warm, warm
					defer warm.Close() // after spliceCopy, its last Take
				}
			} else if n, handled, err := s.ringCopy(ctx, w, dst, src, limit); handled {
				s.st.ring.Add(1)
				return n, inKernel, err
			}
		}
	}
	return s.spliceCopy(ctx, life, w, r, dst, src, limit)
}

// ends is what a copy learns of its two ends on the way to the kernel:
// their endpoints, and the source's RawConn where sendfileFirst asked
// Go for it (SyscallConn allocates), which endpoints then reuses. It
// lives in copyFD's frame and is passed by pointer, so that the frames
// down to the first system call stay small (docs/benchmarks.md,
// "Per-copy cost").
type ends struct {
	dst, src endpoint
	srcConn  syscall.RawConn // nil: not asked yet
}

// filesFirst reports two *os.File that copy_file_range(2) takes
// (fd.CopyableFiles): the pair copyFD leaves to io.Copy, which copies it
// with copy_file_range(2) (fallbackFileToFile). It costs one system call
// where classifying both files costs three. A pair it does not take is
// classified as if it had not been tried; r's RawConn is kept in e for
// that.
func filesFirst(w io.Writer, r io.Reader, e *ends) bool {
	src, ok := r.(*os.File)
	if !ok || src == nil {
		return false
	}
	dst, ok := w.(*os.File)
	if !ok || dst == nil {
		return false
	}
	sc, err := src.SyscallConn()
	if err != nil {
		return false
	}
	dc, err := dst.SyscallConn()
	if err != nil {
		return false
	}
	e.srcConn = sc
	return fd.CopyableFiles(sc, dc)
}

// sendfileFirst sends an *os.File to one of Go's stream sockets with
// sendfile(2) before it classifies the file, as io.Copy does: the kernel
// sends only from a file it can read pages of (a regular file, a block
// device, some character devices) and refuses anything else (EINVAL)
// with nothing sent, so the copy of a regular file, the usual *os.File
// source, skips the fstat(2) that classifying it costs (see
// docs/benchmarks.md, "Per-copy cost"). It is not tried where the ring
// may take the copy (more than RingMinConcurrency file copies running):
// that choice needs the file's kind and size. done is false, with
// nothing sent, where the kernel refused the pair (fd.Refused): the
// caller then classifies and copies as if it had not been tried. Other
// errors are those the classified path meets for a file: a file opened
// without read access or O_PATH (EBADF), a closed file (os.ErrClosed
// once Engine.copy maps it), as io.Copy's. Where it was not done, e
// holds what it learnt of the ends (e.dst, if its Conn is set, and
// e.srcConn), for endpoints.
func (s *sysEngine) sendfileFirst(ctx context.Context, life *lifetime, w io.Writer, r io.Reader, limit int64, m *meter, pacer *Limiter, e *ends) (n int64, done bool, err error) {
	f, ok := r.(*os.File)
	if !ok || f == nil {
		return 0, false, nil
	}
	if !goStreamSocket(w, &e.dst) {
		return 0, false, nil
	}
	if s.ring != nil && pacer == nil {
		running := s.fileCopies.Add(1)
		defer s.fileCopies.Add(-1)
		if min := s.cfg.ringMinConcurrency; min >= 0 && running > int64(min) {
			return 0, false, nil
		}
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	e.srcConn = rc
	if m != nil {
		e.dst.Meter = m
	}
	src := splice.End{Conn: rc} // Info unknown: Sendfile needs none of src
	if pacer != nil {
		src.Pacer = pacer
	}
	defer life.interrupt(w, r).stop()
	n, handled, err := splice.Sendfile(ctx, &e.dst.End, &src, limit)
	if !handled {
		return 0, false, nil
	}
	s.st.sendfile.Add(1)
	return n, true, err
}

// endpoints classifies both ends of a copy into e, and returns why the
// kernel path cannot take it (anything but inKernel) with nothing
// moved. A fifo source without a writer yet is waited for first.
func (s *sysEngine) endpoints(ctx context.Context, w io.Writer, r io.Reader, m *meter, pacer *Limiter, e *ends) (why fallback, err error) {
	var ok bool
	if e.srcConn != nil {
		ok = classify(e.srcConn, false, &e.src) // r is the *os.File it came from
	} else {
		ok = fdEndpoint(r, false, &e.src)
	}
	if !ok {
		return fallbackNoFD, nil
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
			return inKernel, err
		}
	}
	if e.dst.Conn == nil {
		if !fdEndpoint(w, true, &e.dst) {
			return fallbackNoFD, nil
		}
	}
	if m != nil {
		e.dst.Meter = m
	}
	if pacer != nil {
		e.src.Pacer = pacer
	}
	if e.src.kind == kindFile && e.dst.kind == kindFile && isOSFile(r) && isOSFile(w) {
		// io.Copy between two *os.File uses copy_file_range(2), which
		// beats file -> pipe -> file (it may even share extents).
		return fallbackFileToFile, nil
	}
	return inKernel, nil
}

// spliceCopy copies with sendfile(2) (a regular file to a stream socket)
// or the splice loop, in the caller's goroutine, on the netpoller.
func (s *sysEngine) spliceCopy(ctx context.Context, life *lifetime, w io.Writer, r io.Reader, dst, src *endpoint, limit int64) (int64, fallback, error) {
	// splice.Copy and splice.Sendfile wait on the netpoller: when ctx
	// ends, deadlines in the past on the caller's values wake them.
	defer life.interrupt(w, r).stop()
	if src.kind == kindFile && dst.kind == kindSocket {
		// sendfile(2): one system call per chunk where file -> pipe ->
		// socket needs two; see docs/benchmarks.md.
		n, handled, err := splice.Sendfile(ctx, &dst.End, &src.End, limit)
		if handled {
			s.st.sendfile.Add(1)
			return n, inKernel, err
		}
	}
	n, handled, err := splice.Copy(ctx, &dst.End, &src.End, limit, s.pool)
	if !handled {
		// EINVAL, ENOSYS or EOPNOTSUPP before any byte, an O_APPEND
		// destination: nothing moved.
		return n, fallbackRefused, err
	}
	s.st.spliceLoop.Add(1)
	return n, inKernel, err
}

// ringCopy runs a copy from a regular file to anything but a stream
// socket on the ring (CopyReads): its reads that miss the page cache go
// through the ring, so that they do not block an OS thread. handled is
// false, with nothing moved, where no pool pipe is free, the file cannot
// be pinned or the kernel cannot splice the pair. w is the caller's
// destination, whose waits interruptOnDone wakes.
func (s *sysEngine) ringCopy(ctx context.Context, w io.Writer, dst, src *endpoint, limit int64) (int64, bool, error) {
	file := uring.File{Conn: src.Conn, Size: src.size}
	interrupt := func() func() { return interruptOnDone(ctx, w, nil) }
	return s.ring.CopyReads(ctx, &dst.End, file, limit, interrupt)
}

// warmer returns the ring's Warmer for a copy or fan-out reading at most
// limit bytes (< 0: to EOF) of the regular file src: the Warmer reads
// the chunks not in the page cache in before the caller reads them, so
// that its reads do not wait for the disk on an OS thread. It returns
// nil where src is not a regular file or there is nothing to warm (a
// short copy, all in the page cache). An error reading the file's
// offset gives nil too: the caller's own read meets it.
func (s *sysEngine) warmer(src *endpoint, limit int64) *uring.Warmer {
	if s.ring == nil || src.kind != kindFile {
		return nil
	}
	warm, err := s.ring.NewWarmer(uring.File{Conn: src.Conn, Size: src.size, Dev: src.dev}, limit)
	if err != nil {
		return nil
	}
	return warm
}

func isOSFile(v any) bool {
	_, ok := v.(*os.File)
	return ok
}

// undelivered returns the bytes a failed kernel copy read from its
// source and could not deliver nor put back, which err reports
// (splice.UndeliveredError): 0 where it reports none.
func undelivered(err error) int64 {
	if err == nil {
		return 0
	}
	var u *splice.UndeliveredError // after the nil check: &u escapes, an allocation
	if errors.As(err, &u) {
		return u.N
	}
	return 0
}
