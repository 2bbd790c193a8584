package main

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"
)

// newTestRunner builds an in-process runner over a small dataset.
func newTestRunner(t *testing.T, size int64) *runner {
	t.Helper()
	ds, err := openDataset(t.TempDir(), size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ds.close)
	w, err := newWorld(ds, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.close)
	cfg := &config{reps: 1, timeout: time.Minute}
	return &runner{cfg: cfg, w: w, m: newMeter()}
}

// TestHarnessSinglePairs runs the splice loop baseline and io.Copy through
// the harness for every pair kind: bytes counted, checksums compared.
func TestHarnessSinglePairs(t *testing.T) {
	const size = 1<<20 + 3 // not a multiple of any pipe or page size
	r := newTestRunner(t, size)
	loop := &strategy{name: stratLoop, copy: func(dst io.Writer, src io.Reader) (int64, error) {
		return spliceLoop(dst, src, newPipeCache(64<<10, 4))
	}}
	ioCopy := goroutineStrategy(stratIOCopy, io.Copy)
	user := goroutineStrategy(stratUserspace, userspaceCopy)
	for _, p := range must(parsePairs("all")) {
		for _, s := range []*strategy{loop, ioCopy, user} {
			for _, verify := range []bool{true, false} {
				m, err := r.singleRep(s, p, size, 3, verify)
				if err != nil {
					t.Fatalf("%s %s verify=%v: %v", p, s.name, verify, err)
				}
				want := int64(size)
				if !verify {
					want *= 3
				}
				if m.Bytes != want {
					t.Fatalf("%s %s: %d bytes, want %d", p, s.name, m.Bytes, want)
				}
			}
		}
	}
}

// TestHarnessCatchesWrongCopies checks that a copy that loses, adds or
// corrupts bytes fails the rep.
func TestHarnessCatchesWrongCopies(t *testing.T) {
	const size = 256 << 10
	r := newTestRunner(t, size)
	short := &strategy{name: "short", copy: func(dst io.Writer, src io.Reader) (int64, error) {
		n, err := io.Copy(dst, io.LimitReader(src, size-1))
		io.Copy(io.Discard, src)
		return n + 1, err // claims every byte
	}}
	corrupt := &strategy{name: "corrupt", copy: func(dst io.Writer, src io.Reader) (int64, error) {
		b, err := io.ReadAll(src)
		if err != nil {
			return 0, err
		}
		b[len(b)/2] ^= 1
		n, err := dst.Write(b)
		return int64(n), err
	}}
	p := pair{kindPipe, kindTCP}
	if _, err := r.singleRep(short, p, size, 1, false); err == nil {
		t.Error("a short copy passed")
	}
	if _, err := r.singleRep(corrupt, p, size, 1, true); err == nil {
		t.Error("a corrupted copy passed the verify rep")
	}
	// The ticker rep's destinations are checked by the sink process.
	fp := pair{kindFile, kindTCP}
	if _, err := r.concurrentRep(goroutineStrategy(short.name, short.copy), fp, 1, size, false, true); err == nil {
		t.Error("a short copy passed the ticker rep")
	}
	if _, err := r.concurrentRep(goroutineStrategy(corrupt.name, corrupt.copy), fp, 2, size/2, true, true); err == nil {
		t.Error("a corrupted copy passed the ticker's verify rep")
	}
}

// TestHarnessConcurrent runs a small concurrent rep of each socket pair,
// with and without the ticker (whose TCP destinations a sink process
// drains).
func TestHarnessConcurrent(t *testing.T) {
	const n, per = 8, 128 << 10
	r := newTestRunner(t, n*per)
	s := goroutineStrategy(stratIOCopy, io.Copy)
	for _, p := range must(parsePairs("unix-unix,tcp-tcp,file-tcp")) {
		for _, verify := range []bool{true, false} {
			for _, ticker := range []bool{true, false} {
				m, err := r.concurrentRep(s, p, n, per, verify, ticker)
				if err != nil {
					t.Fatalf("%s verify=%v ticker=%v: %v", p, verify, ticker, err)
				}
				if m.Bytes != n*per {
					t.Fatalf("%s verify=%v ticker=%v: %d bytes, want %d", p, verify, ticker, m.Bytes, n*per)
				}
			}
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestHarnessFanout runs the fan-out rep, whose destinations a sink
// process drains: every strategy's copies pass, and one that delivers
// short or corrupted bytes to a destination fails.
func TestHarnessFanout(t *testing.T) {
	const size, ways = 512<<10 + 5, 3
	r := newTestRunner(t, size)
	r.cfg.fanoutWays, r.cfg.fanoutSize = ways, size
	r.planFanout(fanoutStrategies())
	var runs []*strategy
	for _, c := range r.cases {
		if c.scenario == "fanout" {
			runs = append(runs, c.strategies...)
			for _, s := range c.strategies {
				for _, verify := range []bool{true, false} {
					m, err := c.rep(s, verify)
					if err != nil {
						t.Fatalf("%s verify=%v: %v", s.name, verify, err)
					}
					if m.Bytes != ways*size {
						t.Fatalf("%s verify=%v: %d bytes, want %d", s.name, verify, m.Bytes, ways*size)
					}
				}
			}
		}
	}
	if len(runs) < 3 {
		t.Fatalf("planned %d fan-out strategies, want pipes.FanOut and the two io.Copy ones", len(runs))
	}
	each := func(f func(i int, dst io.Writer, b []byte) error) func(context.Context, []io.Writer, io.Reader) (int64, error) {
		return func(_ context.Context, dsts []io.Writer, src io.Reader) (int64, error) {
			b, err := io.ReadAll(src)
			if err != nil {
				return 0, err
			}
			for i, d := range dsts {
				if err := f(i, d, b); err != nil {
					return 0, err
				}
			}
			return int64(len(b)), nil
		}
	}
	short := each(func(i int, dst io.Writer, b []byte) error {
		if i == ways-1 {
			b = b[:len(b)-1]
		}
		_, err := dst.Write(b)
		return err
	})
	corrupt := each(func(i int, dst io.Writer, b []byte) error {
		if i == 1 {
			b = bytes.Clone(b)
			b[len(b)/2] ^= 1
		}
		_, err := dst.Write(b)
		return err
	})
	if _, err := r.fanoutRep(short, size, ways, false); err == nil {
		t.Error("a fan-out short to one destination passed")
	}
	if _, err := r.fanoutRep(corrupt, size, ways, true); err == nil {
		t.Error("a fan-out that corrupted one destination's bytes passed the verify rep")
	}
}
