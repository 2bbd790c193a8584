//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/pipes-go/pipes"
)

// strategy is one way to run a copy.
type strategy struct {
	name string
	// skip, when set, says why the strategy does not run here.
	skip string
	// singleOnly strategies run in single-stream scenarios only.
	singleOnly bool
	// copy runs one copy in the calling goroutine.
	copy func(dst io.Writer, src io.Reader) (int64, error)
	// start starts one copy of many concurrent ones; wait returns its result.
	start func(ctx context.Context, dst io.Writer, src io.Reader) (wait func() (int64, error))
	// startFlow starts one direction of a relay (the proxy scenario),
	// which must tell when it ends while the other direction runs on.
	startFlow func(ctx context.Context, dst io.Writer, src io.Reader) flow
	// engine is the pipes engine behind the strategy, if any.
	engine *pipes.Engine
}

// strategySet builds every strategy once per run; engines live until close.
type strategySet struct {
	all     []*strategy
	engines []*pipes.Engine
	only    string
}

// With only set, it builds just that strategy (a child process of
// -isolate needs one engine, not all).
func newStrategySet(backends string, loopPipes *pipeCache, only string, opts ...pipes.Option) *strategySet {
	set := &strategySet{only: only}
	if backends == "all" || backends == "io_uring" {
		set.addEngine(stratRing, append([]pipes.Option{pipes.WithBackend(pipes.BackendIOUring)}, opts...)...)
	}
	if backends == "all" || backends == "splice" {
		set.addEngine(stratSplice, append([]pipes.Option{pipes.WithBackend(pipes.BackendSplice)}, opts...)...)
	}
	set.add(&strategy{
		name:       stratLoop,
		singleOnly: true,
		copy: func(dst io.Writer, src io.Reader) (int64, error) {
			return spliceLoop(dst, src, loopPipes)
		},
	})
	set.add(goroutineStrategy(stratIOCopy, io.Copy))
	set.add(goroutineStrategy(stratUserspace, userspaceCopy))
	for _, s := range set.all {
		if s.engine != nil {
			set.engines = append(set.engines, s.engine)
		}
	}
	return set
}

func (set *strategySet) add(s *strategy) {
	if set.only == "" || s.name == set.only {
		set.all = append(set.all, s)
	}
}

func (set *strategySet) addEngine(name string, opts ...pipes.Option) {
	if set.only == "" || name == set.only {
		set.add(engineStrategy(name, opts...))
	}
}

// forScenario returns the strategies of a scenario, skipped ones included
// (they show as a note).
func (set *strategySet) forScenario(single bool) []*strategy {
	var out []*strategy
	for _, s := range set.all {
		if s.singleOnly && !single {
			continue
		}
		out = append(out, s)
	}
	return out
}

func (set *strategySet) close() error {
	var first error
	for _, e := range set.engines {
		if err := e.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// engineStrategy runs copies through a pipes Engine: Engine.Copy for one
// stream, Engine.CopyAsync for concurrent copies. Engine options other
// than the backend keep their defaults (what a user gets) unless
// -iowq-workers or -max-pipes set them.
func engineStrategy(name string, opts ...pipes.Option) *strategy {
	e, err := pipes.NewEngine(opts...)
	if err != nil {
		return &strategy{name: name, skip: fmt.Sprintf("NewEngine refused: %v", err)}
	}
	return &strategy{
		name:   name,
		engine: e,
		copy:   e.Copy,
		start: func(ctx context.Context, dst io.Writer, src io.Reader) func() (int64, error) {
			return e.CopyAsync(ctx, dst, src).Wait
		},
		startFlow: func(ctx context.Context, dst io.Writer, src io.Reader) flow {
			return e.CopyAsync(ctx, dst, src)
		},
	}
}

// goroutineStrategy runs one goroutine per concurrent copy.
func goroutineStrategy(name string, copyFn func(io.Writer, io.Reader) (int64, error)) *strategy {
	return &strategy{
		name: name,
		copy: copyFn,
		start: func(_ context.Context, dst io.Writer, src io.Reader) func() (int64, error) {
			type result struct {
				n   int64
				err error
			}
			done := make(chan result, 1)
			go func() {
				n, err := copyFn(dst, src)
				done <- result{n, err}
			}()
			return func() (int64, error) {
				r := <-done
				return r.n, r.err
			}
		},
		startFlow: func(ctx context.Context, dst io.Writer, src io.Reader) flow {
			return startGoroutineFlow(ctx, copyFn, dst, src)
		},
	}
}

// flow is one direction of a relay: a *pipes.Future, or a goroutine.
type flow interface {
	Done() <-chan struct{}
	Wait() (int64, error)
}

// goroutineFlow is copyFn in a goroutine, as examples/proxy runs io.Copy:
// cancelling ctx interrupts it with a deadline in the past on both ends.
type goroutineFlow struct {
	done chan struct{}
	n    int64
	err  error
}

func startGoroutineFlow(ctx context.Context, copyFn func(io.Writer, io.Reader) (int64, error), dst io.Writer, src io.Reader) *goroutineFlow {
	f := &goroutineFlow{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		stop := context.AfterFunc(ctx, func() {
			for _, v := range []any{dst, src} {
				if c, ok := v.(net.Conn); ok {
					c.SetDeadline(time.Unix(1, 0))
				}
			}
		})
		defer stop()
		f.n, f.err = copyFn(dst, src)
	}()
	return f
}

func (f *goroutineFlow) Done() <-chan struct{} { return f.done }

func (f *goroutineFlow) Wait() (int64, error) {
	<-f.done
	return f.n, f.err
}

// userspaceCopy is io.CopyBuffer with a 32 KiB buffer through wrappers
// that hide io.ReaderFrom and io.WriterTo: the read(2)/write(2) loop.
func userspaceCopy(dst io.Writer, src io.Reader) (int64, error) {
	buf := make([]byte, 32<<10)
	return io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, buf)
}

// enginePath describes which path the engine took for the copies between
// two snapshots of its counters.
func enginePath(before, after pipes.Stats) string {
	ring := after.Ring - before.Ring
	spl := after.Splice - before.Splice
	user := after.Userspace - before.Userspace
	sf := after.Sendfile - before.Sendfile
	total := ring + spl + user + sf
	if total == 0 {
		return ""
	}
	var parts []string
	for _, p := range []struct {
		name string
		n    uint64
	}{{"ring", ring}, {"splice", spl}, {"sendfile", sf}, {"user", user}} {
		if p.n == 0 {
			continue
		}
		if p.n == total {
			parts = append(parts, p.name)
		} else {
			parts = append(parts, fmt.Sprintf("%s %d%%", p.name, p.n*100/total))
		}
	}
	s := parts[0]
	for _, p := range parts[1:] {
		s += "+" + p
	}
	if warmed := after.Warmed - before.Warmed; warmed > 0 {
		s += fmt.Sprintf(", %d%% of chunks read in by the ring", warmed*100/max(1, warmed+after.Cached-before.Cached))
	}
	if exhausted := after.PoolExhausted - before.PoolExhausted; exhausted > 0 {
		// Rounds through the userspace buffer for want of a free pool
		// pipe (Stats.PoolExhausted).
		s += fmt.Sprintf(", %d rounds with no pipe free", exhausted)
	}
	if ring > 0 || after.Warmed > before.Warmed || after.SQEs > before.SQEs {
		if enters := after.Enters - before.Enters; enters > 0 {
			s += fmt.Sprintf(" (%.0f SQE/enter)", float64(after.SQEs-before.SQEs)/float64(enters))
		}
	}
	return s
}

// engineStats returns the engine's counters, or the zero Stats.
func (s *strategy) engineStats() pipes.Stats {
	if s.engine == nil {
		return pipes.Stats{}
	}
	return s.engine.Stats()
}

// fanoutStrategy copies one source to several destinations at once.
type fanoutStrategy struct {
	name string
	run  func(ctx context.Context, dsts []io.Writer, src io.Reader) (int64, error)
}

// fanoutStrategies lists pipes' fan-out strategies: Engine.FanOut, on an
// engine of its own made with opts (the command line's engine options)
// for each run, reads the source once and tees it, or sends it from the
// file, to every destination. The fanout scenario runs them against the
// baselines (one io.Copy per destination, each from its own *os.File:
// sendfile; and io.Copy into an io.MultiWriter).
func fanoutStrategies(opts ...pipes.Option) []fanoutStrategy {
	return []fanoutStrategy{{name: "pipes.FanOut", run: func(ctx context.Context, dsts []io.Writer, src io.Reader) (int64, error) {
		e, err := pipes.NewEngine(opts...)
		if err != nil {
			return 0, err
		}
		defer e.Close()
		var total int64
		for i, r := range e.FanOut(ctx, src, dsts) {
			if r.Err != nil {
				return total, fmt.Errorf("destination %d: %w", i, r.Err)
			}
			total += r.Written
		}
		return total / int64(max(len(dsts), 1)), nil
	}}}
}

// engineOptions are the Engine options the command line sets.
func (cfg *config) engineOptions() []pipes.Option {
	var opts []pipes.Option
	if cfg.iowqWorkers > 0 {
		opts = append(opts, pipes.WithIOWQMaxWorkers(uint32(cfg.iowqWorkers)))
	}
	if cfg.maxPipes > 0 {
		opts = append(opts, pipes.WithMaxPipes(cfg.maxPipes))
	}
	if cfg.ringMin >= -1 {
		opts = append(opts, pipes.WithRingMinConcurrency(cfg.ringMin))
	}
	if cfg.sendTurns != 0 {
		opts = append(opts, pipes.WithSendTurns(cfg.sendTurns))
	}
	return opts
}
