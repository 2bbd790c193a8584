package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"64K": 64 << 10, "1M": 1 << 20, "1MiB": 1 << 20, "2g": 2 << 30, "4096": 4096, "16MB": 16 << 20} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "K", "-1M", "0", "1T"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) gave no error", in)
		}
	}
}

func TestParsePairs(t *testing.T) {
	ps, err := parsePairs("file-pipe, tcp->unix")
	if err != nil || len(ps) != 2 || ps[0] != (pair{kindFile, kindPipe}) || ps[1] != (pair{kindTCP, kindUnix}) {
		t.Fatalf("parsePairs = %v, %v", ps, err)
	}
	if all, _ := parsePairs("all"); len(all) != 16 {
		t.Fatalf("all pairs: %d, want 16", len(all))
	}
	if _, err := parsePairs("file-disk"); err == nil {
		t.Fatal("no error for an unknown kind")
	}
}

func TestParseFlagsModes(t *testing.T) {
	q, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if q.full || q.reps != 3 || len(q.ns) != 3 || len(q.sizes) != 2 || !q.isolate || q.child != -1 {
		t.Fatalf("quick defaults: %+v", q)
	}
	if strings.Join(q.scenarios, ",") != quickScenarios || len(q.proxySizes) != 2 || len(q.proxyNs) != 2 || q.proxyReq != 64 || q.proxyTime != 500*time.Millisecond {
		t.Fatalf("quick proxy defaults: %+v", q)
	}
	af, err := parseFlags([]string{"-full"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(af.scenarios, ",") != allScenarios || !strings.Contains(allScenarios, "proxy") || len(af.proxySizes) != 3 || af.proxyTime != time.Second {
		t.Fatalf("full proxy defaults: %+v", af)
	}
	p, err := parseFlags([]string{"-scenarios", "proxy", "-proxy-sizes", "1M", "-proxy-n", "2,8", "-proxy-request", "1K", "-proxy-time", "2s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.scenarios) != 1 || p.proxySizes[0] != 1<<20 || len(p.proxyNs) != 2 || p.proxyReq != 1024 || p.proxyTime != 2*time.Second {
		t.Fatalf("proxy flags: %+v", p)
	}
	f, err := parseFlags([]string{"-full", "-reps", "7", "-scenarios", "pairs"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !f.full || f.reps != 7 || len(f.ns) != 4 || len(f.pairs) != 16 || len(f.scenarios) != 1 {
		t.Fatalf("full: %+v", f)
	}
	for _, bad := range [][]string{{"-scenarios", "nope"}, {"-backend", "x"}, {"-n", "0"}, {"extra"},
		{"-proxy-n", "0"}, {"-proxy-time", "0s"}, {"-proxy-request", "2M"}, {"-proxy-sizes", "0"}} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) gave no error", bad)
		}
	}
}

// TestRepOrder checks that every rep runs each strategy once and that the
// first strategy moves on by one each rep, so no strategy always follows
// the same one.
func TestRepOrder(t *testing.T) {
	for _, n := range []int{1, 2, 5} {
		firsts := map[int]bool{}
		for rep := -1; rep < 2*n; rep++ {
			seen := make([]bool, n)
			for k := 0; k < n; k++ {
				i := repOrder(k, rep, n)
				if i < 0 || i >= n || seen[i] {
					t.Fatalf("n=%d rep %d: strategy %d out of range or run twice", n, rep, i)
				}
				seen[i] = true
			}
			if rep >= 0 {
				firsts[repOrder(0, rep, n)] = true
			}
		}
		if len(firsts) != n {
			t.Errorf("n=%d: %d strategies ran first over %d reps, want all %d", n, len(firsts), 2*n, n)
		}
	}
}
