package pipes

import (
	"fmt"
	"os"
	"strings"
)

// Defaults chosen for a server running as an unprivileged user; see
// docs/design.md for the measurements behind them.
const (
	// DefaultPipeSize is the size requested (F_SETPIPE_SZ) for the
	// engine's intermediate pipes: 1 MiB moves 16 times as much per pair
	// of splice calls as 64 KiB (docs/benchmarks.md, "Figures quoted in
	// the code"). The kernel caps it at /proc/sys/fs/pipe-max-size.
	DefaultPipeSize = 1 << 20
	// DefaultMaxPipes bounds the intermediate pipes of one engine: 32
	// pipes of 1 MiB use half of the 64 MiB per-user pipe quota
	// (/proc/sys/fs/pipe-user-pages-soft) of an unprivileged process.
	DefaultMaxPipes = 32
	// DefaultRingEntries is the io_uring submission queue size.
	DefaultRingEntries = 256
	// DefaultIOWQMaxWorkers caps the io_uring worker threads that run
	// IORING_OP_SPLICE (the ring reads of copies from files to pipes and
	// files; the READs that warm copies to sockets need no worker):
	// without a cap the kernel starts one thread per blocked splice. The
	// ring only takes reads that miss the page cache, which gain from
	// having several in flight: 8 workers kept cold copies at parity
	// with io.Copy where 2 did not (docs/benchmarks.md, "Figures quoted
	// in the code").
	DefaultIOWQMaxWorkers = 8
	// DefaultRingMinConcurrency is how many copies from regular files
	// must run at once before an io_uring engine keeps new ones off the
	// disk with the ring: a copy that runs alone blocks at most one OS
	// thread on the disk, and skips the page-cache checks (which would
	// cost a small cached file a few system calls); any more are
	// checked, so blocked threads do not grow with the copies.
	DefaultRingMinConcurrency = 1
)

// Option configures an Engine built by NewEngine.
type Option func(*config)

type config struct {
	backend            Backend
	backendByOption    bool // backend set by WithBackend, not PIPES_BACKEND
	ringEntries        uint32
	pipeSize           int
	maxPipes           int
	iowqMaxWorkers     uint32
	ringMinConcurrency int
	sendTurns          int // 0: GOMAXPROCS; < 0: none
	sqPoll             bool
	setupHook          func() error // test seam: runs before io_uring setup
}

func defaultConfig() config {
	return config{
		backend:            backendAuto,
		ringEntries:        DefaultRingEntries,
		pipeSize:           DefaultPipeSize,
		maxPipes:           DefaultMaxPipes,
		iowqMaxWorkers:     DefaultIOWQMaxWorkers,
		ringMinConcurrency: DefaultRingMinConcurrency,
	}
}

// backendFromEnv parses PIPES_BACKEND: empty or "auto", "io_uring", "splice".
func backendFromEnv() (Backend, error) {
	v := strings.TrimSpace(os.Getenv("PIPES_BACKEND"))
	switch Backend(v) {
	case "", backendAuto:
		return backendAuto, nil
	case BackendIOUring, BackendSplice:
		return Backend(v), nil
	}
	return "", fmt.Errorf("pipes: PIPES_BACKEND=%q: want auto, io_uring or splice", v)
}

// WithBackend makes NewEngine use backend b (BackendIOUring or
// BackendSplice) instead of choosing one, overriding PIPES_BACKEND. With
// BackendIOUring, NewEngine fails with an error wrapping
// errors.ErrUnsupported where io_uring or IORING_OP_SPLICE is unavailable.
// BackendUserspace is accepted only off Linux, where it is what every
// engine runs (BackendSplice gives it there too: there is no splice(2)
// to use, and the choice said "no io_uring"); on Linux NewEngine fails
// with an error wrapping errors.ErrUnsupported (a userspace copy is
// io.Copy). Any other value fails as an unknown backend.
func WithBackend(b Backend) Option {
	return func(c *config) { c.backend, c.backendByOption = b, true }
}

// WithRingEntries sets the io_uring submission queue size (at least 5,
// rounded up to a power of two by the kernel, clamped to 32768). The
// completion queue is twice as large. 0 changes nothing
// (DefaultRingEntries, or an earlier option's value).
func WithRingEntries(n uint32) Option {
	return func(c *config) {
		if n > 0 {
			c.ringEntries = n
		}
	}
}

// WithPipeSize sets the size of the engine's intermediate pipes in bytes.
// Where the kernel refuses the size (per-user pipe quota), pipes keep the
// size the kernel gives. n <= 0 changes nothing (DefaultPipeSize, or an
// earlier option's value).
func WithPipeSize(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.pipeSize = n
		}
	}
}

// WithMaxPipes bounds how many intermediate pipes the engine holds at
// once. A copy that finds all of them in use does not wait for one: that
// round goes through a 64 KiB userspace buffer instead
// (Stats.PoolExhausted counts such rounds). Copies whose source or
// destination is itself a pipe need none. n <= 0 changes nothing
// (DefaultMaxPipes, or an earlier option's value).
func WithMaxPipes(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxPipes = n
		}
	}
}

// WithIOWQMaxWorkers caps the io_uring worker threads of the engine's ring
// (IORING_REGISTER_IOWQ_MAX_WORKERS, Linux 5.15; ignored on older
// kernels). 0 leaves the kernel's default, one thread per blocked op.
func WithIOWQMaxWorkers(n uint32) Option {
	return func(c *config) { c.iowqMaxWorkers = n }
}

// WithRingMinConcurrency sets how many concurrent copies from regular
// files (Copy, CopyAsync, CopyContext, CopyBatch, Relay) make an io_uring engine keep new ones off the
// disk with the ring (default 1), so that what would block on the disk
// waits in the ring instead of one OS thread per copy: a copy to a
// stream socket is sent with sendfile(2), and each chunk not in the page
// cache is first read in by the ring (IORING_OP_READ, which needs no
// worker thread on ext4, xfs or btrfs); a copy to anything else sends
// its reads that miss the page cache to the capped io-wq workers and
// splices the rest (docs/design.md). 0 routes every such copy through the ring;
// a negative value never does.
func WithRingMinConcurrency(n int) Option {
	return func(c *config) { c.ringMinConcurrency = n }
}

// WithSendTurns bounds how many sendfile(2) calls of an io_uring
// engine's copies from files in the page cache to sockets run at once
// (docs/design.md, "Sharing the CPUs"). Such a call waits for nothing
// and holds its CPU in the kernel for as long as the socket takes pages;
// calls beyond the bound wait for a turn. The default, 0, is GOMAXPROCS
// when the engine is made. A bound below GOMAXPROCS leaves CPUs to the
// process's other goroutines, whose wake-ups then wait less (the latency
// of a server on few CPUs that sends large cached files), at some
// throughput where nothing else wants those CPUs; a negative n takes no
// turns. The splice backend takes none.
func WithSendTurns(n int) Option {
	return func(c *config) { c.sendTurns = n }
}

// WithSQPoll makes the ring poll its submission queue from a kernel thread
// (IORING_SETUP_SQPOLL, unprivileged since Linux 5.11), trading a busy
// kernel thread for fewer io_uring_enter calls. Off by default.
func WithSQPoll(on bool) Option {
	return func(c *config) { c.sqPoll = on }
}
