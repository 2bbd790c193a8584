package main

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5, 5, 1, 9, 7}, 5},
	} {
		in := append([]float64(nil), c.in...)
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
		if !slicesEqual(in, c.in) {
			t.Errorf("median reordered its input: %v", c.in)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
}

func slicesEqual(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPercentileNearestRank(t *testing.T) {
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(100 - i) // 100..1
	}
	for _, c := range []struct{ p, want float64 }{
		{50, 50}, {99, 99}, {100, 100}, {1, 1}, {0.1, 1},
	} {
		if got := percentile(xs, c.p); got != c.want {
			t.Errorf("percentile(1..100, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile([]float64{7, 3}, 99); got != 7 {
		t.Errorf("p99 of 2 values = %v, want the larger", got)
	}
	if got := percentile([]float64{7, 3}, 50); got != 3 {
		t.Errorf("p50 of {7,3} = %v, want 3", got)
	}
	if !math.IsNaN(percentile(nil, 50)) {
		t.Error("percentile(nil) is not NaN")
	}
}

func TestSummarizeAndRatios(t *testing.T) {
	sys := func(v int64) *int64 { return &v }
	mk := func(strategy string, mbps ...float64) *result {
		r := &result{Scenario: "s", Case: "c", Strategy: strategy}
		for i, v := range mbps {
			r.Reps = append(r.Reps, repMetrics{Bytes: gib, Seconds: gib / (v * 1e6), CPU: 0.5, CtxSw: 100, Syscalls: sys(1000), Threads: 5 + i})
		}
		r.Summary = summarize(r.Reps)
		return r
	}
	base := mk(stratIOCopy, 1000, 3000, 2000)
	fast := mk(stratLoop, 4000, 4000, 4000)
	setRatios([]*result{fast, base})
	if got := base.Summary.MBps; math.Abs(got-2000) > 1e-6 {
		t.Fatalf("median MB/s %v, want 2000", got)
	}
	if got := fast.Summary.VsIOCopy; math.Abs(got-2) > 1e-9 {
		t.Fatalf("ratio %v, want 2", got)
	}
	if base.Summary.CPUPerGiB != 0.5 || *base.Summary.SyscallsPerGiB != 1000 || base.Summary.CtxSwPerGiB != 100 {
		t.Fatalf("per-GiB figures wrong: %+v", base.Summary)
	}
	if base.Summary.PeakThreads != 7 {
		t.Fatalf("peak threads %d, want the max over reps, 7", base.Summary.PeakThreads)
	}
	// A result whose reps lack syscall counts has none.
	r := &result{Reps: []repMetrics{{Bytes: gib, Seconds: 1}}}
	if s := summarize(r.Reps); s.SyscallsPerGiB != nil {
		t.Fatal("syscalls per GiB without counts")
	}
	// The summary must marshal (no NaN).
	if _, err := json.Marshal(&report{Results: []*result{base, fast}}); err != nil {
		t.Fatal(err)
	}
}

func TestSummarizeProxy(t *testing.T) {
	sys := func(v int64) *int64 { return &v }
	mk := func(strategy string, reqs ...int64) *result {
		r := &result{Scenario: "proxy", Case: "4K N=64", Strategy: strategy}
		for _, q := range reqs {
			r.Reps = append(r.Reps, repMetrics{Bytes: q * (64 + 4096), Seconds: 0.5, CPU: float64(q) * 20e-6, CtxSw: q / 4, Syscalls: sys(q * 6), Requests: q})
		}
		r.Summary = summarize(r.Reps)
		return r
	}
	base := mk(stratIOCopy, 5000, 10000, 15000)
	fast := mk(stratSplice, 15000, 15000, 15000)
	setRatios([]*result{base, fast})
	s := base.Summary
	if s.ReqPerSec != 20000 || math.Abs(s.CPUPerReqUs-20) > 1e-9 || *s.SyscallsPerReq != 6 || s.CtxSwPerReq != 0.25 {
		t.Fatalf("proxy summary: %+v", s)
	}
	if got := fast.Summary.VsIOCopy; math.Abs(got-1.5) > 1e-9 {
		t.Fatalf("ratio %v, want 1.5 (req/s over io.Copy's)", got)
	}
	// Results of other scenarios have no per-request figures.
	if o := summarize([]repMetrics{{Bytes: gib, Seconds: 1}}); o.ReqPerSec != 0 || o.SyscallsPerReq != nil || o.CPUPerReqUs != 0 {
		t.Fatalf("per-request figures without requests: %+v", o)
	}
	if _, err := json.Marshal(&report{Results: []*result{base, fast}}); err != nil {
		t.Fatal(err)
	}
}

func TestProxyTableLayout(t *testing.T) {
	sys := 6.25
	rs := []*result{
		{Case: "4K N=64", Strategy: stratSplice, Summary: &summary{ReqPerSec: 27350.4, MBps: 114, CPUPerReqUs: 32.04, SyscallsPerReq: &sys, CtxSwPerReq: 0.244, PeakThreads: 8, VsIOCopy: 1.61}, Path: "splice"},
		{Case: "4K N=64", Strategy: stratIOCopy, Summary: &summary{ReqPerSec: 16937, MBps: 70, CPUPerReqUs: 33.1, CtxSwPerReq: 0.3, PeakThreads: 9, VsIOCopy: 1}},
	}
	var b bytes.Buffer
	proxyTable("p", rs, nil).write(&b)
	want := `## p

case     strategy      req/s  MB/s  CPU us/req  syscalls/req  ctxsw/req  threads  vs io.Copy  path
-------  ------------  -----  ----  ----------  ------------  ---------  -------  ----------  ------
4K N=64  pipes/splice  27350   114        32.0           6.2       0.24        8       1.61x  splice
         io.Copy       16937    70        33.1           n/a       0.30        9       1.00x

`
	if got := b.String(); got != want {
		t.Fatalf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestThroughputTableLayout(t *testing.T) {
	sys := 2048.0
	rs := []*result{
		{Case: "64M", Strategy: stratLoop, Summary: &summary{MBps: 41234.4, CPUPerGiB: 0.0251, SyscallsPerGiB: &sys, CtxSwPerGiB: 36, PeakThreads: 5, VsIOCopy: 10.5}},
		{Case: "64M", Strategy: stratIOCopy, Summary: &summary{MBps: 3926, CPUPerGiB: 0.373, CtxSwPerGiB: 1318, PeakThreads: 6, VsIOCopy: 1}},
		{Case: "1G", Strategy: stratRing, Skipped: "NewEngine refused"},
	}
	var b bytes.Buffer
	throughputTable("t", rs, []string{"a note"}).write(&b)
	want := `## t

case  strategy         MB/s  CPU s/GiB  syscalls/GiB  ctxsw/GiB  threads  vs io.Copy  path
----  --------------  -----  ---------  ------------  ---------  -------  ----------  ----
64M   splice loop     41234      0.025          2048         36        5      10.50x
      io.Copy          3926      0.373           n/a       1318        6       1.00x

1G    pipes/io_uring  skipped: NewEngine refused
  note: a note

`
	if got := b.String(); got != want {
		t.Fatalf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestFormatting(t *testing.T) {
	for n, want := range map[int64]string{65536: "64K", 1 << 20: "1M", 1 << 30: "1G", 1536: "1536B", 3 << 29: "1536M"} {
		if got := fmtSize(n); got != want {
			t.Errorf("fmtSize(%d) = %q, want %q", n, got, want)
		}
	}
	for v, want := range map[float64]string{999: "999", 123456: "123k", 12345678: "12M", math.NaN(): "n/a"} {
		if got := fmtCount(v); got != want {
			t.Errorf("fmtCount(%v) = %q, want %q", v, got, want)
		}
	}
	if got := fmtRatio(0); got != "-" {
		t.Errorf("fmtRatio(0) = %q", got)
	}
	if !strings.HasSuffix(fmtRatio(1.234), "x") {
		t.Errorf("fmtRatio(1.234) = %q", fmtRatio(1.234))
	}
}
