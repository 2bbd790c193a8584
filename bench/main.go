// Command bench runs pipes side by side with Go's io.Copy, a userspace
// copy and a direct splice(2) loop, and prints one table per scenario:
//
//	go run ./bench                     # quick run of the headline scenarios
//	go run ./bench -full -out results  # every scenario, size and N, with charts
//	go run ./bench -scenarios proxy    # request/response relays over TCP
//
// Tables go to stdout, progress to stderr. See -h for the flags and the
// header of any run for how each metric is counted.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// config is the parsed command line.
type config struct {
	scenarios    []string
	sizes        []int64 // file-pipe
	pairSizes    []int64 // pairs
	fanoutSize   int64   // fanout: bytes of the file
	fanoutWays   int     // fanout: destinations
	proxySizes   []int64 // proxy: response sizes
	proxyNs      []int   // proxy: client connections
	proxyReq     int     // proxy: request size
	proxyTime    time.Duration
	pairs        []pair
	concPairs    []pair
	ns           []int
	reps         int
	backend      string // all, io_uring, splice
	json         bool
	outDir       string
	cold         bool
	full         bool
	quiet        bool
	dir          string
	pipeSize     int
	repBytes     int64
	concBytes    int64
	latIters     int
	tickerCopies int
	tickerBytes  int64
	iowqWorkers  int // the pipes engines' io-wq cap; 0: the default
	maxPipes     int // the pipes engines' pool bound; 0: the default
	ringMin      int // the pipes engines' RingMinConcurrency; < -1: the default
	sendTurns    int // the pipes engines' WithSendTurns; 0: the default
	timeout      time.Duration
	isolate      bool

	// args are the command line, for the child processes of -isolate.
	args []string
	// child, when >= 0, makes this process a child that runs one rep of
	// case child with strategy childStrategy and prints it as JSON.
	child         int
	childStrategy string
	childVerify   bool
}

const (
	allScenarios = "file-pipe,pairs,concurrent,latency,fanout,proxy"
	// quickScenarios run by default in quick mode: proxy would take the
	// quick run well past its minute or two, so it is part of -full or
	// asked for with -scenarios.
	quickScenarios = "file-pipe,pairs,concurrent,latency,fanout"
)

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		scenarios = fs.String("scenarios", "", "comma list of scenarios: "+allScenarios+" (default: quick "+quickScenarios+"; full all)")
		sizes     = fs.String("sizes", "", "copy sizes for file-pipe and pairs, e.g. 64K,1M,1G (default: by mode)")
		ns        = fs.String("n", "", "concurrency list for concurrent (default: quick 1,64,512; full 1,64,512,4096)")
		pairs     = fs.String("pairs", "", "pairs for the pairs scenario, SRC-DST with kinds file,pipe,unix,tcp, or 'all' (default: by mode)")
		concPairs = fs.String("concurrent-pairs", "unix-unix,tcp-tcp,file-tcp", "pairs for the concurrent scenario")
		reps      = fs.Int("reps", 0, "timed reps per cell, after one untimed verify rep (default: quick 3, full 5)")
		quick     = fs.Bool("quick", true, "quick run (under 2 minutes on 2 cores): the default")
		full      = fs.Bool("full", false, "full run: every size, pair and N (overrides -quick)")
		pipeSize  = fs.String("pipesize", "1M", "F_SETPIPE_SZ for the pipes the harness creates and the splice loop's pipe")
		repBytes  = fs.String("repbytes", "", "bytes a single-stream rep moves at least, by back-to-back copies (default: quick 256M, full 1G)")
		fanSize   = fs.String("fanout-size", "", "file size for the fanout scenario (default: quick 16M, full 64M)")
		concBytes = fs.String("total", "", "bytes a concurrent rep moves, split over N copies (default: quick 256M, full 1G)")
		pxSizes   = fs.String("proxy-sizes", "", "response sizes of the proxy scenario (default: quick 4K,64K, full 4K,64K,1M)")
		pxNs      = fs.String("proxy-n", "64,1024", "client connections of the proxy scenario, a list")
		pxReq     = fs.String("proxy-request", "64", "request size of the proxy scenario")
		pxTime    = fs.String("proxy-time", "", "how long the clients of one proxy rep send requests (default: quick 500ms, full 1s)")
		cfg       = &config{}
	)
	fs.StringVar(&cfg.backend, "backend", "all", "pipes backends to run: all, io_uring or splice")
	fs.BoolVar(&cfg.json, "json", false, "print the results as JSON on stdout instead of tables")
	fs.StringVar(&cfg.outDir, "out", "", "write results.json, tables.txt and charts (SVG and PNG) into `DIR`")
	fs.BoolVar(&cfg.cold, "cold", false, "drop the page cache (root) before each rep of a file-source case instead of re-reading the file")
	fs.BoolVar(&cfg.quiet, "quiet", false, "no progress on stderr")
	fs.StringVar(&cfg.dir, "dir", filepath.Join(os.TempDir(), "pipes-bench"), "where data files live (kept between runs); must be disk-backed for -cold")
	fs.IntVar(&cfg.fanoutWays, "fanout-n", 64, "TCP destinations of the fanout scenario")
	fs.IntVar(&cfg.latIters, "iters", 0, "copies per latency rep (default: quick 200, full 1000)")
	fs.IntVar(&cfg.tickerCopies, "ticker-n", 256, "concurrent file->tcp copies during the ticker measurement")
	fs.IntVar(&cfg.iowqWorkers, "iowq-workers", 0, "io-wq worker cap of the pipes engines (pipes.WithIOWQMaxWorkers; 0: the default)")
	fs.IntVar(&cfg.maxPipes, "max-pipes", 0, "pipe pool bound of the pipes engines (pipes.WithMaxPipes; 0: the default)")
	fs.IntVar(&cfg.ringMin, "ring-min", -2, "concurrent file copies above which the pipes engines use the ring (pipes.WithRingMinConcurrency; -1: never; below -1: the default)")
	fs.IntVar(&cfg.sendTurns, "send-turns", 0, "cached sendfile calls the pipes engines run at once (pipes.WithSendTurns; 0: the default, GOMAXPROCS; -1: no bound)")
	tickerBytes := fs.String("ticker-size", "", "bytes per copy during the ticker measurement (default: quick 4M, full 16M)")
	fs.DurationVar(&cfg.timeout, "timeout", 3*time.Minute, "abort when one rep takes longer")
	fs.BoolVar(&cfg.isolate, "isolate", true, "run each rep in a fresh child process, so that threads, engines and runtime state of one strategy do not carry into the next")
	fs.IntVar(&cfg.child, "child-case", -1, "internal: run one rep of this case index as a child of -isolate")
	fs.StringVar(&cfg.childStrategy, "child-strategy", "", "internal: the child's strategy")
	fs.BoolVar(&cfg.childVerify, "child-verify", false, "internal: the child's rep is the verify rep")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.args = args
	cfg.full = *full || !*quick
	pick := func(flagVal, quickVal, fullVal string) string {
		switch {
		case flagVal != "":
			return flagVal
		case cfg.full:
			return fullVal
		}
		return quickVal
	}
	var err error
	for _, s := range splitList(pick(*scenarios, quickScenarios, allScenarios)) {
		if !strings.Contains(","+allScenarios+",", ","+s+",") {
			return nil, fmt.Errorf("-scenarios: unknown scenario %q (have %s)", s, allScenarios)
		}
		cfg.scenarios = append(cfg.scenarios, s)
	}
	if cfg.sizes, err = parseSizes(pick(*sizes, "1M,64M", "64K,1M,16M,256M,1G")); err != nil {
		return nil, fmt.Errorf("-sizes: %w", err)
	}
	if cfg.pairSizes, err = parseSizes(pick(*sizes, "64M", "64K,1M,64M,1G")); err != nil {
		return nil, fmt.Errorf("-sizes: %w", err)
	}
	fan, err := parseSizes(pick(*fanSize, "16M", "64M"))
	if err != nil || len(fan) != 1 {
		return nil, fmt.Errorf("-fanout-size: want one size: %v", err)
	}
	cfg.fanoutSize = fan[0]
	if cfg.fanoutWays < 1 {
		return nil, fmt.Errorf("-fanout-n: want at least 1")
	}
	if cfg.ns, err = parseInts(pick(*ns, "1,64,512", "1,64,512,4096")); err != nil {
		return nil, fmt.Errorf("-n: %w", err)
	}
	if cfg.proxySizes, err = parseSizes(pick(*pxSizes, "4K,64K", "4K,64K,1M")); err != nil {
		return nil, fmt.Errorf("-proxy-sizes: %w", err)
	}
	if cfg.proxyNs, err = parseInts(*pxNs); err != nil {
		return nil, fmt.Errorf("-proxy-n: %w", err)
	}
	req, err := parseSize(*pxReq)
	if err != nil || req > 1<<20 {
		return nil, fmt.Errorf("-proxy-request: want a size up to 1M: %q", *pxReq)
	}
	cfg.proxyReq = int(req)
	if cfg.proxyTime, err = time.ParseDuration(pick(*pxTime, "500ms", "1s")); err != nil || cfg.proxyTime <= 0 {
		return nil, fmt.Errorf("-proxy-time: want a positive duration: %q", pick(*pxTime, "500ms", "1s"))
	}
	if cfg.pairs, err = parsePairs(pick(*pairs, "pipe-pipe,pipe-tcp,unix-unix,tcp-tcp,file-tcp,file-file", "all")); err != nil {
		return nil, fmt.Errorf("-pairs: %w", err)
	}
	if cfg.concPairs, err = parsePairs(*concPairs); err != nil {
		return nil, fmt.Errorf("-concurrent-pairs: %w", err)
	}
	cfg.reps = *reps
	if cfg.reps <= 0 {
		cfg.reps = map[bool]int{false: 3, true: 5}[cfg.full]
	}
	if cfg.latIters <= 0 {
		cfg.latIters = map[bool]int{false: 200, true: 1000}[cfg.full]
	}
	for _, v := range []struct {
		dst  *int64
		flag string
		val  string
	}{
		{&cfg.repBytes, "-repbytes", pick(*repBytes, "256M", "1G")},
		{&cfg.concBytes, "-total", pick(*concBytes, "256M", "1G")},
		{&cfg.tickerBytes, "-ticker-size", pick(*tickerBytes, "4M", "16M")},
	} {
		if *v.dst, err = parseSize(v.val); err != nil {
			return nil, fmt.Errorf("%s: %w", v.flag, err)
		}
	}
	ps, err := parseSize(*pipeSize)
	if err != nil {
		return nil, fmt.Errorf("-pipesize: %w", err)
	}
	cfg.pipeSize = int(ps)
	switch cfg.backend {
	case "all", "io_uring", "splice":
	default:
		return nil, fmt.Errorf("-backend: want all, io_uring or splice, not %q", cfg.backend)
	}
	if cfg.tickerCopies <= 0 {
		return nil, errors.New("-ticker-n must be positive")
	}
	return cfg, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseSize reads a byte count with an optional K, M or G (binary) suffix.
func parseSize(s string) (int64, error) {
	s = strings.ToUpper(strings.TrimSuffix(strings.TrimSpace(s), "iB"))
	s = strings.TrimSuffix(s, "B")
	mult := int64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		}
		if mult > 1 {
			s = s[:n-1]
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return v * mult, nil
}

func parseSizes(s string) ([]int64, error) {
	var out []int64
	for _, f := range splitList(s) {
		v, err := parseSize(f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		v, err := strconv.Atoi(f)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("bad count %q", f)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

func parsePairs(s string) ([]pair, error) {
	if s == "all" {
		var out []pair
		for _, a := range allKinds {
			for _, b := range allKinds {
				out = append(out, pair{a, b})
			}
		}
		return out, nil
	}
	var out []pair
	for _, f := range splitList(s) {
		p, err := parsePair(f)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

// progress reports on stderr: a bar on a terminal, one line per step
// otherwise, nothing with -quiet.
type progress interface {
	describe(string)
	add(int)
	finish()
}

type barProgress struct{ bar *progressbar.ProgressBar }

func (p barProgress) describe(s string) { p.bar.Describe(s) }
func (p barProgress) add(n int)         { _ = p.bar.Add(n) }
func (p barProgress) finish()           { _ = p.bar.Finish(); fmt.Fprintln(os.Stderr) }

type lineProgress struct {
	w    io.Writer
	last string
}

func (p *lineProgress) describe(s string) {
	// One line per case and strategy, not per rep.
	if i := strings.LastIndex(s, " rep "); i >= 0 {
		s = s[:i]
	} else {
		s = strings.TrimSuffix(s, " verify")
	}
	if s != p.last {
		fmt.Fprintf(p.w, "bench: %s\n", s)
		p.last = s
	}
}
func (p *lineProgress) add(int) {}
func (p *lineProgress) finish() {}

type noProgress struct{}

func (noProgress) describe(string) {}
func (noProgress) add(int)         {}
func (noProgress) finish()         {}

func newProgress(quiet bool, total int64) progress {
	switch {
	case quiet:
		return noProgress{}
	case !term.IsTerminal(int(os.Stderr.Fd())):
		return &lineProgress{w: os.Stderr}
	}
	return barProgress{progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription("bench"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
	)}
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// output prints the report: tables (or JSON) on stdout, and with -out the
// JSON, the tables and the charts into the directory.
func output(cfg *config, rep *report, tables []*table) error {
	var text strings.Builder
	rep.Header.write(&text)
	for _, t := range tables {
		t.write(&text)
	}
	for _, s := range rep.Skipped {
		fmt.Fprintf(&text, "## %s\n\n", s)
	}
	if cfg.json {
		if err := rep.writeJSON(os.Stdout); err != nil {
			return err
		}
	} else {
		fmt.Print(text.String())
	}
	if cfg.outDir == "" {
		return nil
	}
	if err := os.MkdirAll(cfg.outDir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(cfg.outDir, "results.json"))
	if err != nil {
		return err
	}
	if err := rep.writeJSON(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cfg.outDir, "tables.txt"), []byte(text.String()), 0o644); err != nil {
		return err
	}
	files, err := writeCharts(cfg.outDir, rep.Results)
	if err != nil {
		return fmt.Errorf("charts: %w", err)
	}
	fmt.Fprintf(os.Stderr, "bench: wrote %s\n", strings.Join(append([]string{"results.json", "tables.txt"}, files...), ", "))
	return nil
}
