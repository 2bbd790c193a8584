package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pipes-go/pipes"
)

// TestMain makes the test binary the proxy scenario's load generator, or
// a ticker rep's sink process, when a rep starts it (os.Executable is the
// test binary here).
func TestMain(m *testing.M) {
	for env, run := range map[string]func(io.Reader, io.Writer) error{proxyLoadEnv: runProxyLoad, sinkProcEnv: runSinkProc} {
		if os.Getenv(env) == "" {
			continue
		}
		if err := run(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// newProxyRunner is newTestRunner set up for short proxy reps.
func newProxyRunner(t *testing.T) *runner {
	t.Helper()
	r := newTestRunner(t, 1<<20)
	r.cfg.proxyReq = 64
	r.cfg.proxyTime = 50 * time.Millisecond
	return r
}

// relayStrategies are io.Copy, the read/write loop and a pipes engine per
// backend this machine has.
func relayStrategies(t *testing.T) []*strategy {
	t.Helper()
	ss := []*strategy{goroutineStrategy(stratIOCopy, io.Copy), goroutineStrategy(stratUserspace, userspaceCopy)}
	for _, b := range []struct {
		name string
		b    pipes.Backend
	}{{stratRing, pipes.BackendIOUring}, {stratSplice, pipes.BackendSplice}} {
		s := engineStrategy(b.name, pipes.WithBackend(b.b))
		if s.skip != "" {
			t.Logf("%s: %s", b.name, s.skip)
			continue
		}
		t.Cleanup(func() { s.engine.Close() })
		ss = append(ss, s)
	}
	return ss
}

// TestHarnessProxy runs small proxy reps through every relay strategy:
// the rep checks each response's byte count (and in the verify rep every
// byte) and each relay's counts both ways; here the rep's totals are
// checked against its request count.
func TestHarnessProxy(t *testing.T) {
	r := newProxyRunner(t)
	for _, s := range relayStrategies(t) {
		for _, size := range []int64{4 << 10, 64<<10 + 3} {
			for _, verify := range []bool{true, false} {
				m, err := r.proxyRep(s, size, 2, verify)
				if err != nil {
					t.Fatalf("%s %s verify=%v: %v", s.name, fmtSize(size), verify, err)
				}
				if m.Requests < 2 {
					t.Fatalf("%s %s: %d requests in %v, want at least one per client", s.name, fmtSize(size), m.Requests, r.cfg.proxyTime)
				}
				if want := m.Requests * (64 + size); m.Bytes != want {
					t.Fatalf("%s %s: %d bytes for %d requests, want %d", s.name, fmtSize(size), m.Bytes, m.Requests, want)
				}
				if m.Seconds < r.cfg.proxyTime.Seconds()/2 || m.CPU <= 0 {
					t.Fatalf("%s %s: window %.3f s, CPU %.6f s", s.name, fmtSize(size), m.Seconds, m.CPU)
				}
				if r.m.sc != nil && (m.Syscalls == nil || *m.Syscalls <= 0) {
					t.Fatalf("%s %s: syscalls %v", s.name, fmtSize(size), m.Syscalls)
				}
			}
		}
	}
}

// TestHarnessProxyBackendFIN runs verify reps of 1 MiB responses to 64
// clients through every relay strategy: each relay must see its backend's
// EOF, not a reset, though the backend closes the moment it has read the
// relay's EOF (its FIN then is not always sent at once).
func TestHarnessProxyBackendFIN(t *testing.T) {
	if testing.Short() {
		t.Skip("64 clients of 1 MiB responses")
	}
	r := newProxyRunner(t)
	r.cfg.proxyTime = 200 * time.Millisecond
	for _, s := range relayStrategies(t) {
		for rep := range 4 {
			if _, err := r.proxyRep(s, 1<<20, 64, true); err != nil {
				t.Fatalf("%s, rep %d: %v", s.name, rep, err)
			}
		}
	}
}

// TestHarnessProxyCatchesWrongRelays checks that a relay that adds or
// corrupts bytes fails the rep.
func TestHarnessProxyCatchesWrongRelays(t *testing.T) {
	r := newProxyRunner(t)
	extra := goroutineStrategy("extra", func(dst io.Writer, src io.Reader) (int64, error) {
		n, err := io.Copy(dst, src)
		if err != nil {
			return n, err
		}
		m, err := dst.Write([]byte{0})
		return n + int64(m), err
	})
	corrupt := goroutineStrategy("corrupt", func(dst io.Writer, src io.Reader) (int64, error) {
		buf := make([]byte, 32<<10)
		var total int64
		for {
			n, err := src.Read(buf)
			if n > 0 {
				buf[n-1] ^= 1
				m, werr := dst.Write(buf[:n])
				total += int64(m)
				if werr != nil {
					return total, werr
				}
			}
			if err == io.EOF {
				return total, nil
			}
			if err != nil {
				return total, err
			}
		}
	})
	_, err := r.proxyRep(extra, 4<<10, 2, false)
	if err == nil || !strings.Contains(err.Error(), "after the last response") {
		t.Errorf("a relay that adds a byte at the end: %v", err)
	}
	_, err = r.proxyRep(corrupt, 4<<10, 2, true)
	if err == nil || !strings.Contains(err.Error(), "corrupted") {
		t.Errorf("a corrupting relay in the verify rep: %v", err)
	}
}

// TestProxyScenario plans and runs the proxy scenario in process at a
// tiny size and N=2 and checks its table: a row per case and strategy,
// with io.Copy as the ratio's base.
func TestProxyScenario(t *testing.T) {
	r := newProxyRunner(t)
	r.cfg.scenarios = []string{"proxy"}
	r.cfg.proxySizes = []int64{4 << 10, 64 << 10}
	r.cfg.proxyNs = []int{2}
	r.set = newStrategySet("all", newPipeCache(64<<10, 4), "")
	t.Cleanup(func() { r.set.close() })
	r.prog = noProgress{}
	if err := r.planScenarios(); err != nil {
		t.Fatal(err)
	}
	if len(r.cases) != 2 {
		t.Fatalf("%d cases, want 2", len(r.cases))
	}
	if err := r.run(); err != nil {
		t.Fatal(err)
	}
	setRatios(r.res)
	var b bytes.Buffer
	r.infos[0].table(r.infos[0].title, r.res, r.infos[0].notes).write(&b)
	out := b.String()
	t.Logf("\n%s", out)
	strats := r.set.forScenario(false)
	if got, want := len(r.res), 2*len(strats); got != want {
		t.Fatalf("%d results, want %d", got, want)
	}
	for _, res := range r.res {
		if res.Summary == nil && res.Skipped == "" {
			t.Fatalf("%s %s: no summary", res.Case, res.Strategy)
		}
		if res.Summary != nil && (res.Summary.ReqPerSec <= 0 || res.Summary.CPUPerReqUs <= 0) {
			t.Fatalf("%s %s: summary %+v", res.Case, res.Strategy, res.Summary)
		}
		if res.Strategy == stratIOCopy && res.Summary.VsIOCopy != 1 {
			t.Fatalf("%s: io.Copy's ratio %v", res.Case, res.Summary.VsIOCopy)
		}
	}
	if !strings.Contains(out, "req/s") || !strings.Contains(out, "CPU us/req") || !strings.Contains(out, "syscalls/req") {
		t.Fatalf("table lacks the proxy columns:\n%s", out)
	}
	for _, c := range []string{"4K N=2", "64K N=2"} {
		if !strings.Contains(out, "\n"+c+" ") {
			t.Fatalf("table lacks case %q", c)
		}
	}
	lines := strings.Split(out, "\n")
	for _, s := range strats {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, "  "+s.name+"  ") || strings.HasSuffix(l, "  "+s.name) {
				n++
			}
		}
		if n != 2 {
			t.Fatalf("strategy %s has %d rows, want 2:\n%s", s.name, n, out)
		}
	}
}
