package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pipes-go/pipes"
	"golang.org/x/sys/unix"
)

// run is the Linux driver: it sets up the process, plans and runs the
// scenarios, and prints the report.
func run(cfg *config) error {
	if os.Getenv(proxyLoadEnv) != "" {
		// A proxy rep's load generator: see proxyRep.
		return runProxyLoad(os.Stdin, os.Stdout)
	}
	if os.Getenv(sinkProcEnv) != "" {
		// A ticker rep's destinations: see newRemoteSinks.
		return runSinkProc(os.Stdin, os.Stdout)
	}
	// First, while the process has few threads: every thread created
	// later is counted through inheritance.
	m := newMeter()
	if cfg.child >= 0 {
		return runAsChild(cfg, m)
	}
	if cfg.cold && os.Geteuid() != 0 {
		return fmt.Errorf("-cold drops the page cache and needs root")
	}
	if err := raiseNoFile(cfg); err != nil {
		return err
	}
	ds, err := openDataset(cfg.dir, datasetSize(cfg))
	if err != nil {
		return fmt.Errorf("data files in %s: %w", cfg.dir, err)
	}
	defer ds.close()
	w, err := newWorld(ds, cfg.pipeSize)
	if err != nil {
		return err
	}
	defer w.close()
	set := newStrategySet(cfg.backend, newPipeCache(cfg.pipeSize, 16), "", cfg.engineOptions()...)
	r := &runner{cfg: cfg, w: w, m: m, set: set}
	if err := r.planScenarios(); err != nil {
		return err
	}
	hdr := newHeader(cfg, m, set)
	r.prog = newProgress(cfg.quiet, r.units())
	runErr := r.run()
	r.prog.finish()
	if err := set.close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("closing engines: %w", err)
	}
	if runErr != nil {
		return runErr
	}
	setRatios(r.res)
	rep := &report{Header: hdr, Results: r.res, Skipped: r.skip}
	var tables []*table
	for _, info := range r.infos {
		var rs []*result
		for _, res := range r.res {
			if res.Scenario == info.name {
				rs = append(rs, res)
			}
		}
		tables = append(tables, info.table(info.title, rs, info.notes))
	}
	return output(cfg, rep, tables)
}

// runChild runs one rep of case c with strategy s in a fresh process (the
// same binary, the same flags) and returns what it measured: each rep
// starts with the Go runtime's few threads and a new engine, so a peak
// thread count or a warm pool from another strategy cannot leak into it.
func (r *runner) runChild(c *benchCase, s *strategy, verify bool) (repMetrics, error) {
	exe, err := os.Executable()
	if err != nil {
		return repMetrics{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.timeout)
	defer cancel()
	args := append(slices.Clip(r.cfg.args), "-quiet", "-json=false", "-out=",
		"-child-case", strconv.Itoa(c.index), "-child-strategy", s.name, "-child-verify="+strconv.FormatBool(verify))
	cmd := exec.CommandContext(ctx, exe, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(stderr.String()), "bench: "))
		if ctx.Err() != nil {
			msg = fmt.Sprintf("no result after %v (-timeout): the copy hangs", r.cfg.timeout)
		}
		if msg == "" {
			msg = err.Error()
		}
		return repMetrics{}, errors.New(msg)
	}
	var m repMetrics
	if err := json.Unmarshal(stdout.Bytes(), &m); err != nil {
		return repMetrics{}, fmt.Errorf("child output: %w", err)
	}
	return m, nil
}

// runAsChild is the child side of runChild.
func runAsChild(cfg *config, m *meter) error {
	if err := raiseNoFile(cfg); err != nil {
		return err
	}
	ds, err := openDataset(cfg.dir, datasetSize(cfg))
	if err != nil {
		return err
	}
	defer ds.close()
	w, err := newWorld(ds, cfg.pipeSize)
	if err != nil {
		return err
	}
	defer w.close()
	set := newStrategySet(cfg.backend, newPipeCache(cfg.pipeSize, 16), cfg.childStrategy, cfg.engineOptions()...)
	defer set.close()
	r := &runner{cfg: cfg, w: w, m: m, set: set}
	if err := r.planScenarios(); err != nil {
		return err
	}
	if cfg.child >= len(r.cases) {
		return fmt.Errorf("child: no case %d", cfg.child)
	}
	c := r.cases[cfg.child]
	for _, s := range c.strategies {
		if s.name != cfg.childStrategy {
			continue
		}
		if s.skip != "" {
			return errors.New(s.skip)
		}
		before := s.engineStats()
		rm, err := c.rep(s, cfg.childVerify)
		if err != nil {
			return err
		}
		if s.engine != nil {
			rm.Path = enginePath(before, s.engineStats())
		}
		if math.IsNaN(rm.TickerP99) {
			// Not one tick (the rep ended within a millisecond): no
			// figure JSON can carry.
			return errors.New("the copies ended before the ticker ticked: raise -ticker-n or -ticker-size")
		}
		return json.NewEncoder(os.Stdout).Encode(rm)
	}
	return fmt.Errorf("child: case %d has no strategy %q", cfg.child, cfg.childStrategy)
}

// datasetSize is the largest file any planned case reads.
func datasetSize(cfg *config) int64 {
	size := int64(1 << 20)
	for _, sc := range cfg.scenarios {
		switch sc {
		case "file-pipe":
			for _, s := range cfg.sizes {
				size = max(size, s)
			}
		case "pairs", "fanout":
			for _, s := range cfg.pairSizes {
				size = max(size, s)
			}
		case "concurrent":
			for _, n := range cfg.ns {
				size = max(size, int64(n)*max(cfg.concBytes/int64(n), 64<<10))
			}
		case "latency":
			size = max(size, int64(cfg.tickerCopies)*cfg.tickerBytes)
		}
	}
	return size
}

// raiseNoFile lifts RLIMIT_NOFILE for thousands of concurrent copies: each
// holds about four descriptors (both ends of the source and of the
// destination), plus the engine's pooled pipes and a file per file copy.
func raiseNoFile(cfg *config) error {
	n := cfg.tickerCopies
	for _, v := range cfg.ns {
		n = max(n, v)
	}
	for _, v := range cfg.proxyNs {
		n = max(n, v) // a relay: two sockets and up to two pipes
	}
	want := uint64(8*n + 4096)
	got, err := raiseNoFileTo(want)
	if err != nil {
		return err
	}
	if got < want && cfg.child < 0 {
		fmt.Fprintf(os.Stderr, "bench: RLIMIT_NOFILE stays at %d (hard limit; %d wanted): the largest N may run out of descriptors\n", got, want)
	}
	return nil
}

// raiseNoFileTo lifts RLIMIT_NOFILE to want if it is lower, or as far as
// the hard limit allows, and returns the soft limit it leaves.
func raiseNoFileTo(want uint64) (uint64, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	raised := lim
	raised.Cur, raised.Max = want, max(lim.Max, want)
	if unix.Setrlimit(unix.RLIMIT_NOFILE, &raised) == nil {
		return want, nil
	}
	// Without CAP_SYS_RESOURCE only the soft limit can move, up to the hard.
	lim.Cur = lim.Max
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", lim.Cur, err)
	}
	return lim.Cur, nil
}

func newHeader(cfg *config, m *meter, set *strategySet) header {
	h := header{
		Kernel:     kernelRelease(),
		CPU:        cpuModel(),
		NumCPU:     runtime.NumCPU(),
		GoVersion:  runtime.Version(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		Date:       time.Now().Format(time.RFC3339),
		Mode:       map[bool]string{false: "quick", true: "full"}[cfg.full],
		Reps:       cfg.reps,
		Caches:     "warm (each file source re-read into the page cache right before each rep)",
	}
	if cfg.cold {
		h.Caches = "dropped (sync; echo 3 > /proc/sys/vm/drop_caches before each rep of a file-source case)"
	}
	auto := "auto picks "
	if e, err := pipes.NewEngine(); err != nil {
		auto += "nothing: " + err.Error()
	} else {
		auto += string(e.Backend())
		e.Close()
	}
	if v := os.Getenv("PIPES_BACKEND"); v != "" {
		auto += " (PIPES_BACKEND=" + v + ")"
	}
	parts := []string{auto}
	for _, s := range set.all {
		if s.engine != nil {
			parts = append(parts, fmt.Sprintf("%s engine: %s", s.name, s.engine.Backend()))
		} else if s.skip != "" {
			parts = append(parts, fmt.Sprintf("%s: skipped (%s)", s.name, s.skip))
		}
	}
	if cfg.iowqWorkers > 0 {
		parts = append(parts, fmt.Sprintf("engines: io-wq workers %d", cfg.iowqWorkers))
	}
	if cfg.ringMin >= -1 {
		parts = append(parts, fmt.Sprintf("engines: ring min concurrency %d", cfg.ringMin))
	}
	if cfg.maxPipes > 0 {
		parts = append(parts, fmt.Sprintf("engines: max pipes %d", cfg.maxPipes))
	}
	if cfg.sendTurns != 0 {
		parts = append(parts, fmt.Sprintf("engines: send turns %d", cfg.sendTurns))
	}
	h.Backend = strings.Join(parts, "; ")
	if m.sc != nil {
		h.Syscalls = "perf_event_open on tracepoint raw_syscalls:sys_enter, one inheriting counter per startup thread (exact, whole process)"
		if m.sc.withChildren {
			h.Syscalls += "; this kernel has no inherit_thread (5.13), so child processes are counted too and the proxy scenario's syscalls are n/a"
		}
	} else {
		h.Syscalls = "n/a: " + m.scReason
	}
	h.Method = []string{
		"MB/s: bytes delivered to the destination (counted there) / wall time of the rep, median of reps; 1 MB = 10^6 bytes",
		"CPU s/GiB: getrusage(RUSAGE_SELF) utime+stime delta over the rep / GiB moved; whole process: the copy, the harness's feeders and drainers, Go runtime, iou-wrk threads",
		"syscalls/GiB: sys_enter tracepoint count delta / GiB, whole process (harness included, the thread sampler's own reads subtracted)",
		"ctxsw/GiB: getrusage nvcsw+nivcsw delta / GiB, whole process",
		fmt.Sprintf("threads: peak of num_threads in /proc/self/stat (= /proc/self/task, iou-wrk included), sampled every %v, max over reps", threadSampleEvery),
		"vs io.Copy: MB/s over io.Copy's MB/s in the same case (latency: io.Copy's p50 over this p50); above 1 is better",
		"path: which path the pipes engine took (Engine.Stats: ring, splice loop or userspace, with SQEs per io_uring_enter, and the rounds that found no pool pipe free)",
		"every rep counts the bytes received at the destination; a first untimed rep per cell also checks CRC-32C of the received bytes; any mismatch aborts the run",
		"harness: sources fed by sendfile(2) from a data file, destinations drained by splice(2) to /dev/null; strategies interleaved rep by rep, each rep starting one strategy later",
	}
	if cfg.isolate {
		h.Method = append(h.Method, "each rep runs in a fresh child process (a new engine, the Go runtime's few threads), so one strategy's threads and pools do not carry into another's figures")
	}
	return h
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
