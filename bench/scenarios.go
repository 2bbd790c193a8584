//go:build linux

package main

import (
	"golang.org/x/sys/unix"

	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pipes-go/pipes"
)

// benchCase is one cell group of a scenario: a pair, size and concurrency,
// run once per strategy per rep.
type benchCase struct {
	index    int // position in the run, the same in a child process
	scenario string
	name     string
	pair     pair
	size     int64 // bytes per copy
	n        int   // concurrent copies
	single   bool  // single-stream: the splice loop baseline runs too
	// strategies run in this case, skipped ones included (they show as a note).
	strategies []*strategy
	// rep runs one rep of s. verify: untimed rep that checksums everything.
	rep func(s *strategy, verify bool) (repMetrics, error)
}

// scenarioInfo describes a scenario for its table.
type scenarioInfo struct {
	name  string
	title string
	notes []string
	table func(title string, rs []*result, notes []string) *table
}

// runner runs the cases and collects results.
type runner struct {
	cfg   *config
	w     *world
	m     *meter
	set   *strategySet
	prog  progress
	infos []scenarioInfo
	cases []*benchCase
	res   []*result
	skip  []string
}

func (r *runner) addScenario(info scenarioInfo, cases ...*benchCase) {
	r.infos = append(r.infos, info)
	for _, c := range cases {
		c.index = len(r.cases)
		r.cases = append(r.cases, c)
		if c.strategies == nil {
			c.strategies = r.set.forScenario(c.single)
		}
	}
}

// units counts the reps the run will make, for the progress bar.
func (r *runner) units() int64 {
	var n int64
	for _, c := range r.cases {
		for _, s := range c.strategies {
			if s.skip == "" {
				n += int64(r.cfg.reps + 1)
			}
		}
	}
	return n
}

// run runs every case: an untimed verify rep per strategy, then the timed
// reps interleaved across strategies (rep-major) so that drift in the
// machine's load spreads over all of them, each rep starting at the next
// strategy (repOrder).
func (r *runner) run() error {
	for _, c := range r.cases {
		strats := c.strategies
		rs := make([]*result, len(strats))
		before := make([]pipes.Stats, len(strats))
		for i, s := range strats {
			rs[i] = &result{Scenario: c.scenario, Case: c.name, Strategy: s.name, Size: c.size, N: c.n, Skipped: s.skip}
			if c.pair != (pair{}) {
				rs[i].Pair = c.pair.String()
			}
			before[i] = s.engineStats()
		}
		for rep := -1; rep < r.cfg.reps; rep++ {
			for k := range strats {
				i := repOrder(k, rep, len(strats))
				s := strats[i]
				if s.skip != "" {
					continue
				}
				what := "verify"
				if rep >= 0 {
					what = fmt.Sprintf("rep %d/%d", rep+1, r.cfg.reps)
				}
				r.prog.describe(fmt.Sprintf("%s %s %s %s", c.scenario, c.name, s.name, what))
				m, err := r.guard(c, s, rep < 0)
				if err != nil {
					return fmt.Errorf("%s %s, %s, %s: %w", c.scenario, c.name, s.name, what, err)
				}
				if rep >= 0 {
					rs[i].Reps = append(rs[i].Reps, m)
				}
				r.prog.add(1)
			}
		}
		for i, s := range strats {
			rs[i].Summary = summarize(rs[i].Reps)
			if s.engine != nil && !r.cfg.isolate {
				rs[i].Path = enginePath(before[i], s.engineStats())
			}
			for _, m := range rs[i].Reps {
				if m.Path != "" {
					rs[i].Path = m.Path
				}
			}
		}
		r.res = append(r.res, rs...)
	}
	return nil
}

// guard runs one rep under the -timeout watchdog: a copy that hangs makes
// the run fail with the case named rather than hang.
func (r *runner) guard(c *benchCase, s *strategy, verify bool) (repMetrics, error) {
	type out struct {
		m   repMetrics
		err error
	}
	done := make(chan out, 1)
	go func() {
		var o out
		if r.cfg.isolate {
			o.m, o.err = r.runChild(c, s, verify)
		} else {
			o.m, o.err = c.rep(s, verify)
		}
		done <- o
	}()
	select {
	case o := <-done:
		return o.m, o.err
	case <-time.After(r.cfg.timeout):
		return repMetrics{}, fmt.Errorf("no result after %v (-timeout): the copy hangs", r.cfg.timeout)
	}
}

// prepareSource puts the first n bytes of the source file in the state
// the run measures: read into the page cache (warm), or with every cache
// dropped (-cold).
func (r *runner) prepareSource(f *os.File, n int64) error {
	if r.cfg.cold {
		return dropCaches()
	}
	return warmFile(f, r.w.devNull, n)
}

// warmFeeder makes sure the first n bytes of the feeders' size-byte data
// file are cached, so that a socket or pipe source is limited by the
// copy, not by the disk.
func (r *runner) warmFeeder(size, n int64) error {
	f, err := r.w.ds.file(size)
	if err != nil {
		return err
	}
	return warmFile(f, r.w.devNull, n)
}

// singleRep runs k copies of size bytes one after the other into one
// destination; a regular-file source is rewound between copies, any
// other source is fresh per copy and fed concurrently. The rep's clock
// runs from the first copy's start until the drainer has seen EOF.
func (r *runner) singleRep(s *strategy, p pair, size int64, k int, verify bool) (repMetrics, error) {
	if verify || r.cfg.cold && p.src == kindFile {
		k = 1 // cold: the second copy of the file would read it from the cache
	}
	var closers []io.Closer
	defer func() { closeAll(closers) }()
	srcs := make([]*source, k)
	for i := range srcs {
		if p.src == kindFile && i > 0 {
			srcs[i] = srcs[0]
			continue
		}
		src, err := r.w.newSource(p.src, size, 0, size)
		if err != nil {
			return repMetrics{}, err
		}
		closers = append(closers, src.closers...)
		srcs[i] = src
	}
	snk, err := r.w.newSink(p.dst, verify)
	if err != nil {
		return repMetrics{}, err
	}
	closers = append(closers, snk.closers...)
	data, err := r.w.ds.file(size)
	if err != nil {
		return repMetrics{}, err
	}
	if p.src == kindFile {
		err = r.prepareSource(data, size)
	} else {
		err = r.warmFeeder(size, size)
	}
	if err != nil {
		return repMetrics{}, err
	}
	if p.dst == kindFile {
		// Write back what earlier reps left dirty, so that this rep
		// pays only for its own writes (without it the first strategy
		// of every round paid for the last one's: docs/benchmarks.md,
		// "Figures quoted in the code").
		unix.Sync()
	}

	sp, err := r.m.begin()
	if err != nil {
		return repMetrics{}, err
	}
	defer sp.abort()
	for i, src := range srcs {
		if f, ok := src.r.(*os.File); ok && p.src == kindFile {
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return repMetrics{}, err
			}
		}
		fed := startFeeder(src)
		n, err := s.copy(snk.w, src.r)
		if ferr := <-fed; err == nil && ferr != nil {
			err = ferr
		}
		if err != nil {
			return repMetrics{}, fmt.Errorf("copy %d: %w", i, err)
		}
		if n != size {
			return repMetrics{}, fmt.Errorf("copy %d returned %d bytes, want %d", i, n, size)
		}
	}
	got, sum, err := snk.finish()
	if err != nil {
		return repMetrics{}, fmt.Errorf("destination drain: %w", err)
	}
	m, err := sp.end(got)
	if err != nil {
		return repMetrics{}, err
	}
	if want := int64(k) * size; got != want {
		return repMetrics{}, fmt.Errorf("destination received %d bytes, want %d", got, want)
	}
	if verify {
		want, err := r.w.ds.sum(size, 0, size)
		if err != nil {
			return repMetrics{}, err
		}
		if sum != want {
			return repMetrics{}, fmt.Errorf("destination checksum %08x, want %08x: bytes corrupted, reordered or duplicated", sum, want)
		}
	}
	return m, nil
}

// startFeeder runs src's feeder, if any; the channel yields its error.
func startFeeder(src *source) <-chan error {
	ch := make(chan error, 1)
	if src.feed == nil {
		ch <- nil
		return ch
	}
	go func() { ch <- src.feed() }()
	return ch
}

// concurrentRep runs n copies at once, each of per bytes: from sections of
// the dataset's master file (regular-file sources, as *io.LimitedReader of
// a file positioned at the section) or from fed sockets, into n drained
// destinations. With ticker, a goroutine measures how late a 1 ms
// time.Ticker fires meanwhile, and TCP destinations are drained by a
// process of their own (newRemoteSinks).
func (r *runner) concurrentRep(s *strategy, p pair, n int, per int64, verify, ticker bool) (repMetrics, error) {
	size := r.w.ds.size
	var closers []io.Closer
	var remote *remoteSinks
	defer func() {
		closeAll(closers)
		if remote != nil {
			remote.wait() // it exits once every connection has ended
		}
	}()
	srcs := make([]*source, n)
	snks := make([]*sink, n)
	if ticker && p.dst == kindTCP {
		// Drained by another process: only the copies share the
		// ticker's run queue (see sinkProcEnv).
		rs, ss, err := r.w.newRemoteSinks(n, verify)
		if err != nil {
			return repMetrics{}, err
		}
		remote, snks = rs, ss
		for _, s := range ss {
			closers = append(closers, s.closers...)
		}
	}
	for i := range n {
		src, err := r.w.newSource(p.src, size, int64(i)*per, per)
		if err != nil {
			return repMetrics{}, err
		}
		closers = append(closers, src.closers...)
		srcs[i] = src
		if remote != nil {
			continue
		}
		snk, err := r.w.newSink(p.dst, verify)
		if err != nil {
			return repMetrics{}, err
		}
		closers = append(closers, snk.closers...)
		snks[i] = snk
	}
	var err error
	if p.src == kindFile {
		err = r.prepareSource(r.w.ds.master, int64(n)*per)
	} else {
		err = r.warmFeeder(size, int64(n)*per)
	}
	if err != nil {
		return repMetrics{}, err
	}

	sp, err := r.m.begin()
	if err != nil {
		return repMetrics{}, err
	}
	defer sp.abort()
	var tick *tickerProbe
	if ticker {
		tick = startTickerProbe(time.Millisecond)
	}
	fed := make([]<-chan error, n)
	waits := make([]func() (int64, error), n)
	for i := range n {
		fed[i] = startFeeder(srcs[i])
		waits[i] = s.start(context.Background(), snks[i].w, srcs[i].r)
	}
	var total int64
	var errs []error
	sums := make([]uint32, n)
	for i := range n {
		c, err := waits[i]()
		if ferr := <-fed[i]; err == nil && ferr != nil {
			err = ferr
		}
		if err == nil && c != per {
			err = fmt.Errorf("returned %d bytes, want %d", c, per)
		}
		got, sum, derr := snks[i].finish()
		if err == nil && derr != nil {
			err = fmt.Errorf("destination drain: %w", derr)
		}
		if err == nil && got != per {
			err = fmt.Errorf("destination received %d bytes, want %d", got, per)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("copy %d of %d: %w", i, n, err))
		}
		total += got
		sums[i] = sum
	}
	var tickP99 float64
	if tick != nil {
		tickP99 = tick.stop()
	}
	m, err := sp.end(total)
	if err != nil {
		return repMetrics{}, err
	}
	if len(errs) > 0 {
		return repMetrics{}, errors.Join(errs[:min(len(errs), 3)]...)
	}
	if verify {
		for i := range n {
			want, err := r.w.ds.sum(size, int64(i)*per, per)
			if err != nil {
				return repMetrics{}, err
			}
			if sums[i] != want {
				return repMetrics{}, fmt.Errorf("copy %d of %d: destination checksum %08x, want %08x", i, n, sums[i], want)
			}
		}
	}
	m.TickerP99 = tickP99
	return m, nil
}

// tickerProbe records how late a time.Ticker's ticks are received.
type tickerProbe struct {
	quit chan struct{}
	out  chan float64
}

func startTickerProbe(every time.Duration) *tickerProbe {
	p := &tickerProbe{quit: make(chan struct{}), out: make(chan float64, 1)}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		var over []float64
		last := time.Now()
		for {
			select {
			case <-p.quit:
				p.out <- percentile(over, 99)
				return
			case <-t.C:
				now := time.Now()
				over = append(over, float64(now.Sub(last)-every)/float64(time.Millisecond))
				last = now
			}
		}
	}()
	return p
}

// stop returns the p99 oversleep in milliseconds.
func (p *tickerProbe) stop() float64 {
	close(p.quit)
	return <-p.out
}

// latencyRep times iters single copies of size bytes over TCP, each from a
// fresh connection whose bytes (and FIN) are already queued, into one
// long-lived destination connection: from the start of the copy until
// the receiver has read all size bytes.
func (r *runner) latencyRep(s *strategy, size int64, iters int, verify bool) (repMetrics, error) {
	if err := r.warmFeeder(size, size); err != nil {
		return repMetrics{}, err
	}
	dst, peer, err := r.w.tcpPair()
	if err != nil {
		return repMetrics{}, err
	}
	defer closeAll([]io.Closer{dst, peer})
	want, err := r.w.ds.sum(size, 0, size)
	if err != nil {
		return repMetrics{}, err
	}
	buf := make([]byte, size)
	lat := make([]float64, 0, iters)
	sp, err := r.m.begin()
	if err != nil {
		return repMetrics{}, err
	}
	defer sp.abort()
	for i := range iters {
		src, err := r.w.newSource(kindTCP, size, 0, size)
		if err != nil {
			return repMetrics{}, err
		}
		if err := prefeed(src); err != nil {
			closeAll(src.closers)
			return repMetrics{}, err
		}
		type res struct {
			n   int64
			err error
		}
		done := make(chan res, 1)
		t0 := time.Now()
		go func() {
			n, err := s.copy(dst, src.r)
			done <- res{n, err}
		}()
		_, rerr := io.ReadFull(peer, buf)
		d := time.Since(t0)
		c := <-done
		closeAll(src.closers)
		switch {
		case c.err != nil:
			return repMetrics{}, fmt.Errorf("copy %d: %w", i, c.err)
		case c.n != size:
			return repMetrics{}, fmt.Errorf("copy %d returned %d bytes, want %d", i, c.n, size)
		case rerr != nil:
			return repMetrics{}, fmt.Errorf("copy %d: receiver: %w", i, rerr)
		}
		if verify {
			if sum := crc32.Checksum(buf, castagnoli); sum != want {
				return repMetrics{}, fmt.Errorf("copy %d: checksum %08x, want %08x", i, sum, want)
			}
		}
		lat = append(lat, float64(d)/float64(time.Microsecond))
	}
	m, err := sp.end(int64(iters) * size)
	if err != nil {
		return repMetrics{}, err
	}
	// Nothing more may arrive: a duplicated byte would show here.
	if err := peer.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		return repMetrics{}, err
	}
	if n, _ := peer.Read(buf[:1]); n != 0 {
		return repMetrics{}, errors.New("receiver got bytes beyond the copies")
	}
	m.P50, m.P99 = percentile(lat, 50), percentile(lat, 99)
	return m, nil
}

// prefeed queues a source's bytes and EOF before the clock starts.
func prefeed(src *source) error {
	select {
	case err := <-startFeeder(src):
		return err
	case <-time.After(10 * time.Second):
		return errors.New("prefeed of a latency source did not complete: socket buffers too small")
	}
}

// fanoutRep copies one regular file into k TCP sockets at once. The
// sockets are drained by a process of their own (newRemoteSinks), so
// that the process measured holds only the fan-out: drainers in the same
// process share its two Ps with the senders, and how the Go scheduler
// happened to interleave them moved a rep's CPU per GiB by up to 2x
// (docs/benchmarks.md, "Fan-out with its receivers in a process of
// their own").
func (r *runner) fanoutRep(run func(ctx context.Context, dsts []io.Writer, src io.Reader) (int64, error), size int64, k int, verify bool) (repMetrics, error) {
	var closers []io.Closer
	var remote *remoteSinks
	defer func() {
		closeAll(closers)
		if remote != nil {
			remote.wait() // it exits once every connection has ended
		}
	}()
	src, err := r.w.newSource(kindFile, size, 0, size)
	if err != nil {
		return repMetrics{}, err
	}
	closers = append(closers, src.closers...)
	remote, snks, err := r.w.newRemoteSinks(k, verify)
	if err != nil {
		return repMetrics{}, err
	}
	dsts := make([]io.Writer, k)
	for i, snk := range snks {
		closers = append(closers, snk.closers...)
		dsts[i] = snk.w
	}
	data, err := r.w.ds.file(size)
	if err != nil {
		return repMetrics{}, err
	}
	if err := r.prepareSource(data, size); err != nil {
		return repMetrics{}, err
	}
	sp, err := r.m.begin()
	if err != nil {
		return repMetrics{}, err
	}
	defer sp.abort()
	n, err := run(context.Background(), dsts, src.r)
	if err != nil {
		return repMetrics{}, err
	}
	if n != size {
		return repMetrics{}, fmt.Errorf("fan-out returned %d bytes, want %d", n, size)
	}
	want, err := r.w.ds.sum(size, 0, size)
	if err != nil {
		return repMetrics{}, err
	}
	var total int64
	for i, snk := range snks {
		got, sum, err := snk.finish()
		if err != nil {
			return repMetrics{}, err
		}
		if got != size || (verify && sum != want) {
			return repMetrics{}, fmt.Errorf("destination %d got %d bytes (checksum %08x), want %d (%08x)", i, got, sum, size, want)
		}
		total += got
	}
	return sp.end(total)
}

// planScenarios builds the cases the config asks for.
func (r *runner) planScenarios() error {
	cfg := r.cfg
	caches := "warm: file re-read into the page cache before each rep"
	if cfg.cold {
		caches = "cold: sync + drop_caches before each rep"
	}
	for _, sc := range cfg.scenarios {
		switch sc {
		case "file-pipe":
			var cases []*benchCase
			p := pair{kindFile, kindPipe}
			for _, size := range cfg.sizes {
				k := copiesPerRep(cfg.repBytes, size)
				cases = append(cases, &benchCase{
					scenario: sc, name: fmtSize(size), pair: p, size: size, n: 1, single: true,
					rep: func(s *strategy, verify bool) (repMetrics, error) {
						return r.singleRep(s, p, size, k, verify)
					},
				})
			}
			r.addScenario(scenarioInfo{
				name:  sc,
				title: "file-pipe: regular file -> pipe, by size (the original library's headline)",
				notes: []string{
					fmt.Sprintf("destination: os.Pipe with F_SETPIPE_SZ %s, drained concurrently by splice(2) to /dev/null", fmtSize(int64(cfg.pipeSize))),
					repNote(cfg),
					"source " + caches,
				},
				table: throughputTable,
			}, cases...)
		case "pairs":
			var cases []*benchCase
			for _, p := range cfg.pairs {
				for _, size := range cfg.pairSizes {
					k := copiesPerRep(cfg.repBytes, size)
					name := p.String()
					if len(cfg.pairSizes) > 1 {
						name += " " + fmtSize(size)
					}
					cases = append(cases, &benchCase{
						scenario: sc, name: name, pair: p, size: size, n: 1, single: true,
						rep: func(s *strategy, verify bool) (repMetrics, error) {
							return r.singleRep(s, p, size, k, verify)
						},
					})
				}
			}
			sizes := make([]string, len(cfg.pairSizes))
			for i, s := range cfg.pairSizes {
				sizes[i] = fmtSize(s)
			}
			r.addScenario(scenarioInfo{
				name:  sc,
				title: "pairs: one copy per pair kind, " + strings.Join(sizes, ", "),
				notes: []string{
					"pipe/unix/tcp sources are fed concurrently by sendfile(2) from a cached file; destinations drained by splice(2) to /dev/null (file destinations: written to disk-backed files, sync(2) before each rep)",
					repNote(cfg),
					"file sources " + caches,
				},
				table: throughputTable,
			}, cases...)
		case "concurrent":
			var cases []*benchCase
			for _, p := range cfg.concPairs {
				for _, n := range cfg.ns {
					per := max(cfg.concBytes/int64(n), 64<<10)
					cases = append(cases, &benchCase{
						scenario: sc, name: fmt.Sprintf("%s N=%d", p, n), pair: p, size: per, n: n,
						rep: func(s *strategy, verify bool) (repMetrics, error) {
							return r.concurrentRep(s, p, n, per, verify, false)
						},
					})
				}
			}
			r.addScenario(scenarioInfo{
				name:  sc,
				title: fmt.Sprintf("concurrent: N copies at once, %s per rep split evenly (min 64K each)", fmtSize(cfg.concBytes)),
				notes: []string{
					"pipes strategies: Engine.CopyAsync per copy; io.Copy strategies: one goroutine per copy",
					"file sources: sections of one file, each an *io.LimitedReader of its own *os.File; " + caches,
				},
				table: throughputTable,
			}, cases...)
		case "latency":
			var cases []*benchCase
			for _, size := range []int64{4 << 10, 64 << 10} {
				cases = append(cases, &benchCase{
					scenario: sc, name: "tcp->tcp " + fmtSize(size), pair: pair{kindTCP, kindTCP}, size: size, n: 1, single: true,
					rep: func(s *strategy, verify bool) (repMetrics, error) {
						return r.latencyRep(s, size, cfg.latIters, verify)
					},
				})
			}
			r.addScenario(scenarioInfo{
				name:  sc,
				title: fmt.Sprintf("latency: one copy over TCP, %d copies per rep", cfg.latIters),
				notes: []string{
					"from the call (Copy / io.Copy in a new goroutine) until the receiver has read every byte; the source's bytes and FIN are queued before the clock starts",
					"p50/p99 are per rep (nearest rank), then the median over reps",
				},
				table: latencyTable,
			}, cases...)
			tp := pair{kindFile, kindTCP}
			per := cfg.tickerBytes
			r.addScenario(scenarioInfo{
				name:  "ticker",
				title: fmt.Sprintf("latency: 1 ms time.Ticker oversleep while %d file->tcp copies of %s run", cfg.tickerCopies, fmtSize(per)),
				notes: []string{
					"oversleep = time between two received ticks minus 1 ms, p99 per rep (nearest rank), median over reps",
					"destinations drained by a process of their own: the measured process runs only the copies and the ticker (CPU s/GiB and threads are its own)",
					"file source " + caches,
				},
				table: tickerTable,
			}, &benchCase{
				scenario: "ticker", name: fmt.Sprintf("file->tcp N=%d", cfg.tickerCopies), pair: tp, size: per, n: cfg.tickerCopies,
				rep: func(s *strategy, verify bool) (repMetrics, error) {
					return r.concurrentRep(s, tp, cfg.tickerCopies, per, verify, true)
				},
			})
		case "fanout":
			fs := fanoutStrategies(cfg.engineOptions()...)
			if len(fs) == 0 {
				r.skip = append(r.skip, "fanout: skipped: the root package has no fan-out API yet (see fanoutStrategies in bench/strategies.go)")
				continue
			}
			r.planFanout(fs)
		case "proxy":
			r.planProxy()
		default:
			return fmt.Errorf("unknown scenario %q", sc)
		}
	}
	return nil
}

// planFanout adds the fanout scenario: pipes' fan-out strategies against
// one goroutine per destination running io.Copy from its own *os.File of
// the same file (Go sends it with sendfile), and io.Copy into an
// io.MultiWriter: one file into fanoutWays TCP sockets.
func (r *runner) planFanout(fs []fanoutStrategy) {
	ways, size := r.cfg.fanoutWays, r.cfg.fanoutSize
	fs = append(fs, fanoutStrategy{name: stratIOCopy, run: func(_ context.Context, dsts []io.Writer, src io.Reader) (int64, error) {
		f, ok := src.(*os.File)
		if !ok {
			return 0, fmt.Errorf("fan-out source is %T, want *os.File", src)
		}
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return 0, err
		}
		var wg sync.WaitGroup
		ns := make([]int64, len(dsts))
		errs := make([]error, len(dsts))
		for i, d := range dsts {
			g, err := os.Open(f.Name())
			if err != nil {
				return 0, err
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer g.Close()
				if _, err := g.Seek(off, io.SeekStart); err != nil {
					errs[i] = err
					return
				}
				ns[i], errs[i] = io.Copy(d, g)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				return 0, fmt.Errorf("destination %d: %w", i, err)
			}
			if ns[i] != ns[0] {
				return 0, fmt.Errorf("destination %d got %d bytes, destination 0 %d", i, ns[i], ns[0])
			}
		}
		return ns[0], nil
	}}, fanoutStrategy{name: stratIOCopy + " MultiWriter", run: func(_ context.Context, dsts []io.Writer, src io.Reader) (int64, error) {
		return io.Copy(io.MultiWriter(dsts...), src)
	}})
	// Each fan-out strategy becomes a strategy whose copy is unused: the
	// case's rep calls its run directly.
	runs := map[string]func(context.Context, []io.Writer, io.Reader) (int64, error){}
	var strats []*strategy
	for _, f := range fs {
		runs[f.name] = f.run
		strats = append(strats, &strategy{name: f.name})
	}
	r.addScenario(scenarioInfo{
		name:  "fanout",
		title: fmt.Sprintf("fanout: one file of %s into %d TCP sockets (io.Copy: one goroutine and one *os.File per destination, sendfile)", fmtSize(size), ways),
		notes: []string{
			"destinations drained by a process of their own: the measured process runs only the fan-out (CPU s/GiB, syscalls and threads are its own)",
		},
		table: throughputTable,
	}, &benchCase{
		scenario: "fanout", name: fmt.Sprintf("file->%dx tcp", ways), size: size, n: ways, single: true, strategies: strats,
		rep: func(s *strategy, verify bool) (repMetrics, error) {
			return r.fanoutRep(runs[s.name], size, ways, verify)
		},
	})
}

func repNote(cfg *config) string {
	if cfg.cold {
		return "cold: each rep is one copy (a second copy would read the cached file)"
	}
	return fmt.Sprintf("each rep runs back-to-back copies totalling at least %s (a 64K copy alone is too short to time)", fmtSize(cfg.repBytes))
}

// copiesPerRep is how many back-to-back copies of size make one rep.
func copiesPerRep(repBytes, size int64) int {
	k := (repBytes + size - 1) / size
	return int(min(max(k, 1), 4096))
}
