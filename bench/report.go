package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

const gib = 1 << 30

// repMetrics is what one timed rep measured.
type repMetrics struct {
	Bytes    int64   `json:"bytes"`
	Seconds  float64 `json:"seconds"`
	CPU      float64 `json:"cpu_seconds"`
	CtxSw    int64   `json:"context_switches"`
	Syscalls *int64  `json:"syscalls,omitempty"` // nil: not counted
	Threads  int     `json:"peak_threads"`
	// Latency scenario only, in microseconds.
	P50 float64 `json:"p50_us,omitempty"`
	P99 float64 `json:"p99_us,omitempty"`
	// Ticker scenario only: p99 oversleep of a 1 ms ticker, milliseconds.
	TickerP99 float64 `json:"ticker_p99_ms,omitempty"`
	// Proxy scenario only: requests answered during the rep.
	Requests int64 `json:"requests,omitempty"`
	// Path is which path a pipes engine took in this rep.
	Path string `json:"path,omitempty"`
}

// result is one strategy in one case of a scenario.
type result struct {
	Scenario string       `json:"scenario"`
	Case     string       `json:"case"`
	Pair     string       `json:"pair,omitempty"`
	Size     int64        `json:"size,omitempty"` // bytes per copy
	N        int          `json:"n,omitempty"`    // concurrent copies
	Strategy string       `json:"strategy"`
	Skipped  string       `json:"skipped,omitempty"`
	Path     string       `json:"path,omitempty"` // which path a pipes engine took
	Reps     []repMetrics `json:"reps,omitempty"`
	Summary  *summary     `json:"summary,omitempty"`
}

// summary holds the medians over reps (the peak thread count is the max).
type summary struct {
	MBps           float64  `json:"mb_per_s"`
	CPUPerGiB      float64  `json:"cpu_s_per_gib"`
	SyscallsPerGiB *float64 `json:"syscalls_per_gib,omitempty"`
	CtxSwPerGiB    float64  `json:"ctxsw_per_gib"`
	PeakThreads    int      `json:"peak_threads"`
	P50            float64  `json:"p50_us,omitempty"`
	P99            float64  `json:"p99_us,omitempty"`
	TickerP99      float64  `json:"ticker_p99_ms,omitempty"`
	// Proxy scenario only: requests per second, and the relay process's
	// CPU microseconds, syscalls and context switches per request.
	ReqPerSec      float64  `json:"req_per_s,omitempty"`
	CPUPerReqUs    float64  `json:"cpu_us_per_req,omitempty"`
	SyscallsPerReq *float64 `json:"syscalls_per_req,omitempty"`
	CtxSwPerReq    float64  `json:"ctxsw_per_req,omitempty"`
	// VsIOCopy: MB/s over io.Copy's (latency: io.Copy's p50 over this p50;
	// proxy: req/s over io.Copy's), so above 1 is better. 0 when io.Copy
	// did not run.
	VsIOCopy float64 `json:"vs_io_copy,omitempty"`
}

func summarize(reps []repMetrics) *summary {
	if len(reps) == 0 {
		return nil
	}
	var mbps, cpu, csw, sys, p50, p99, tick []float64
	var rps, cpuReq, cswReq, sysReq []float64
	s := &summary{}
	for _, r := range reps {
		if r.Requests > 0 {
			q := float64(r.Requests)
			if r.Seconds > 0 {
				rps = append(rps, q/r.Seconds)
			}
			cpuReq = append(cpuReq, r.CPU/q*1e6)
			cswReq = append(cswReq, float64(r.CtxSw)/q)
			if r.Syscalls != nil {
				sysReq = append(sysReq, float64(*r.Syscalls)/q)
			}
		}
		g := float64(r.Bytes) / gib
		if r.Seconds > 0 {
			mbps = append(mbps, float64(r.Bytes)/r.Seconds/1e6)
		}
		if g > 0 {
			cpu = append(cpu, r.CPU/g)
			csw = append(csw, float64(r.CtxSw)/g)
			if r.Syscalls != nil {
				sys = append(sys, float64(*r.Syscalls)/g)
			}
		}
		s.PeakThreads = max(s.PeakThreads, r.Threads)
		p50 = append(p50, r.P50)
		p99 = append(p99, r.P99)
		tick = append(tick, r.TickerP99)
	}
	s.MBps = median(mbps)
	s.CPUPerGiB = median(cpu)
	s.CtxSwPerGiB = median(csw)
	if len(sys) == len(reps) {
		v := median(sys)
		s.SyscallsPerGiB = &v
	}
	s.P50, s.P99, s.TickerP99 = median(p50), median(p99), median(tick)
	if len(cpuReq) == len(reps) {
		// Every rep is a proxy rep; medians of none would be NaN, which
		// JSON cannot hold.
		if len(rps) > 0 {
			s.ReqPerSec = median(rps)
		}
		s.CPUPerReqUs, s.CtxSwPerReq = median(cpuReq), median(cswReq)
		if len(sysReq) == len(reps) {
			v := median(sysReq)
			s.SyscallsPerReq = &v
		}
	}
	return s
}

// setRatios fills VsIOCopy for every result of each case.
func setRatios(rs []*result) {
	base := map[string]*summary{}
	for _, r := range rs {
		if r.Strategy == stratIOCopy && r.Summary != nil {
			base[r.Scenario+"\x00"+r.Case] = r.Summary
		}
	}
	for _, r := range rs {
		b := base[r.Scenario+"\x00"+r.Case]
		if b == nil || r.Summary == nil {
			continue
		}
		switch {
		case r.Summary.ReqPerSec > 0 && b.ReqPerSec > 0:
			r.Summary.VsIOCopy = r.Summary.ReqPerSec / b.ReqPerSec
		case r.Summary.P50 > 0 && b.P50 > 0:
			r.Summary.VsIOCopy = b.P50 / r.Summary.P50
		case b.MBps > 0:
			r.Summary.VsIOCopy = r.Summary.MBps / b.MBps
		}
	}
}

// median returns the median of xs (the mean of the two middle values for
// an even count), NaN for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile returns the p-th percentile (0 < p <= 100) of xs by the
// nearest-rank method: the smallest value with at least p% of the values
// at or below it. NaN for none.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// table is a titled grid of cells; rows with a nil slice print as a gap.
type table struct {
	title  string
	header []string
	rows   [][]string
	notes  []string
	right  []bool // right-align column i
}

func (t *table) write(w io.Writer) {
	width := make([]int, len(t.header))
	for i, h := range t.header {
		width[i] = len(h)
	}
	for _, r := range t.rows {
		for i, c := range r {
			// The last cell of a short row (a note) may run past the columns.
			if i == len(r)-1 && len(r) < len(t.header) {
				break
			}
			width[i] = max(width[i], len(c))
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		for i, c := range cells {
			if i > 0 {
				b.WriteString("  ")
			}
			pad := strings.Repeat(" ", max(width[i]-len(c), 0))
			switch {
			case i == len(cells)-1 && len(cells) < len(t.header):
				b.WriteString(c)
			case i < len(t.right) && t.right[i]:
				b.WriteString(pad + c)
			default:
				b.WriteString(c + pad)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	fmt.Fprintf(w, "## %s\n\n", t.title)
	line(t.header)
	sep := make([]string, len(width))
	for i, n := range width {
		sep[i] = strings.Repeat("-", n)
	}
	line(sep)
	for _, r := range t.rows {
		if r == nil {
			fmt.Fprintln(w)
			continue
		}
		line(r)
	}
	for _, n := range t.notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	fmt.Fprintln(w)
}

func fmtFloat(v float64, prec int) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

// fmtCount prints a per-GiB count compactly: 1234 -> 1234, 123456 -> 123k.
func fmtCount(v float64) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case v >= 10e6:
		return fmt.Sprintf("%.0fM", v/1e6)
	case v >= 100e3:
		return fmt.Sprintf("%.0fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func fmtRatio(v float64) string {
	if v == 0 || math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v)
}

// fmtSize prints a byte count in binary units: 65536 -> 64K.
func fmtSize(n int64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{30, "G"}, {20, "M"}, {10, "K"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", n>>u.shift, u.name)
		}
	}
	return fmt.Sprintf("%dB", n)
}

// throughputTable lays out the results of one scenario, one block of
// rows per case, in the order the results came.
func throughputTable(title string, rs []*result, notes []string) *table {
	t := &table{
		title:  title,
		header: []string{"case", "strategy", "MB/s", "CPU s/GiB", "syscalls/GiB", "ctxsw/GiB", "threads", "vs io.Copy", "path"},
		right:  []bool{false, false, true, true, true, true, true, true, false},
		notes:  notes,
	}
	t.addRows(rs, func(s *summary) []string {
		sys := "n/a"
		if s.SyscallsPerGiB != nil {
			sys = fmtCount(*s.SyscallsPerGiB)
		}
		return []string{fmtFloat(s.MBps, 0), fmtFloat(s.CPUPerGiB, 3), sys,
			fmtCount(s.CtxSwPerGiB), fmt.Sprint(s.PeakThreads), fmtRatio(s.VsIOCopy)}
	})
	return t
}

// addRows adds a row per result: the case name on the first row of each
// case (a blank row between cases), the strategy, cells(summary), and the
// engine path; a skipped result gets its reason instead of cells.
func (t *table) addRows(rs []*result, cells func(*summary) []string) {
	last := ""
	for _, r := range rs {
		if r.Case != last && last != "" {
			t.rows = append(t.rows, nil)
		}
		caseCell := ""
		if r.Case != last {
			caseCell = r.Case
		}
		last = r.Case
		if r.Summary == nil {
			t.rows = append(t.rows, []string{caseCell, r.Strategy, "skipped: " + r.Skipped})
			continue
		}
		row := append([]string{caseCell, r.Strategy}, cells(r.Summary)...)
		t.rows = append(t.rows, append(row, r.Path))
	}
}

// latencyTable lays out single-copy latencies.
func latencyTable(title string, rs []*result, notes []string) *table {
	t := &table{
		title:  title,
		header: []string{"case", "strategy", "p50 us", "p99 us", "threads", "vs io.Copy (p50)", "path"},
		right:  []bool{false, false, true, true, true, true, false},
		notes:  notes,
	}
	t.addRows(rs, func(s *summary) []string {
		return []string{fmtFloat(s.P50, 1), fmtFloat(s.P99, 1), fmt.Sprint(s.PeakThreads), fmtRatio(s.VsIOCopy)}
	})
	return t
}

// tickerTable lays out the ticker-oversleep runs.
func tickerTable(title string, rs []*result, notes []string) *table {
	t := &table{
		title:  title,
		header: []string{"case", "strategy", "MB/s", "CPU s/GiB", "threads", "ticker p99 oversleep ms", "vs io.Copy", "path"},
		right:  []bool{false, false, true, true, true, true, true, false},
		notes:  notes,
	}
	t.addRows(rs, func(s *summary) []string {
		return []string{fmtFloat(s.MBps, 0), fmtFloat(s.CPUPerGiB, 3), fmt.Sprint(s.PeakThreads),
			fmtFloat(s.TickerP99, 2), fmtRatio(s.VsIOCopy)}
	})
	return t
}

// proxyTable lays out the request/response relays: rates and the relay
// process's costs per request.
func proxyTable(title string, rs []*result, notes []string) *table {
	t := &table{
		title:  title,
		header: []string{"case", "strategy", "req/s", "MB/s", "CPU us/req", "syscalls/req", "ctxsw/req", "threads", "vs io.Copy", "path"},
		right:  []bool{false, false, true, true, true, true, true, true, true, false},
		notes:  notes,
	}
	t.addRows(rs, func(s *summary) []string {
		sys := "n/a"
		if s.SyscallsPerReq != nil {
			sys = fmtFloat(*s.SyscallsPerReq, 1)
		}
		return []string{fmtFloat(s.ReqPerSec, 0), fmtFloat(s.MBps, 0), fmtFloat(s.CPUPerReqUs, 1), sys,
			fmtFloat(s.CtxSwPerReq, 2), fmt.Sprint(s.PeakThreads), fmtRatio(s.VsIOCopy)}
	})
	return t
}

// header describes the machine and the method.
type header struct {
	Kernel     string   `json:"kernel"`
	CPU        string   `json:"cpu"`
	NumCPU     int      `json:"num_cpu"`
	GoVersion  string   `json:"go_version"`
	GOMAXPROCS int      `json:"gomaxprocs"`
	Backend    string   `json:"backend"`
	Date       string   `json:"date"`
	Caches     string   `json:"caches"`
	Mode       string   `json:"mode"`
	Reps       int      `json:"reps"`
	Syscalls   string   `json:"syscalls_counted_by"`
	Method     []string `json:"method"`
}

func (h *header) write(w io.Writer) {
	fmt.Fprintf(w, "# pipes bench (%s)\n\n", h.Mode)
	fmt.Fprintf(w, "kernel %s; cpu %s x%d; %s; GOMAXPROCS=%d\n", h.Kernel, h.CPU, h.NumCPU, h.GoVersion, h.GOMAXPROCS)
	fmt.Fprintf(w, "backend: %s\n", h.Backend)
	fmt.Fprintf(w, "date %s; page cache: %s; %d timed reps per cell\n", h.Date, h.Caches, h.Reps)
	fmt.Fprintf(w, "syscalls: %s\n", h.Syscalls)
	for _, m := range h.Method {
		fmt.Fprintf(w, "- %s\n", m)
	}
	fmt.Fprintln(w)
}

// report is everything a run produced.
type report struct {
	Header  header    `json:"header"`
	Results []*result `json:"results"`
	Skipped []string  `json:"skipped_scenarios,omitempty"`
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// repOrder is the strategy that runs k-th in rep (rep -1 is the verify
// rep): each rep starts one strategy later than the one before. A rep
// pays for what the rep before it left (a file destination's writeback,
// a busy page allocator), so a fixed order would charge it to the same
// strategy every time; rotated, no strategy pays it in more than one of
// every n reps, and the median drops it.
func repOrder(k, rep, n int) int { return (k + rep + 1) % n }
