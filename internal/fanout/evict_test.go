package fanout

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// TestEvictIdle: at a sample, a running destination whose count has not
// changed for d since the sample that saw it change is evicted; one
// whose count changed has its clock restarted; one stopping or exited is
// left alone. The samples' times are given: nothing here waits.
func TestEvictIdle(t *testing.T) {
	const d = 100 * time.Millisecond
	now := time.Unix(1000, 0)
	cases := []struct {
		name     string
		idle     time.Duration // now - the sample that saw the last change
		grew     bool          // the count changed since that sample
		state    state
		evicted  bool
		restarts bool // since becomes now
	}{
		{name: "idle for d", idle: d, state: running, evicted: true},
		{name: "idle for longer", idle: 3 * d, state: running, evicted: true},
		{name: "idle just short of d", idle: d - time.Nanosecond, state: running},
		{name: "grew after a long idle", idle: 10 * d, grew: true, state: running, restarts: true},
		{name: "stopping", idle: 3 * d, state: stopping},
		{name: "exited", idle: 3 * d, state: exited},
	}
	ds := make([]*Dest, len(cases))
	last := make([]int64, len(cases))
	since := make([]time.Time, len(cases))
	for i, c := range cases {
		ds[i] = NewDest(i, io.Discard)
		since[i] = now.Add(-c.idle)
		if c.grew {
			ds[i].written.Store(1)
		}
		switch c.state {
		case stopping:
			ds[i].stop(errors.New("stopped before"))
		case exited:
			close(ds[i].done)
		}
	}
	evictIdle(ds, last, since, now, d)
	for i, c := range cases {
		evicted := errors.Is(context.Cause(ds[i].life), ErrEvicted)
		if evicted != c.evicted {
			t.Errorf("%s: evicted %v, want %v", c.name, evicted, c.evicted)
		}
		if restarted := since[i].Equal(now); restarted != c.restarts || c.restarts && last[i] != 1 {
			t.Errorf("%s: since %v, last %d; want the clock restarted: %v", c.name, since[i], last[i], c.restarts)
		}
	}
}

// TestEvictIdleBound: sampled four times per d, as awaitAll samples, a
// destination is evicted between d and 1.25d after its last progress,
// wherever that falls between two samples (before d: one idle for d
// from the start is evicted then).
func TestEvictIdleBound(t *testing.T) {
	const d = 100 * time.Millisecond
	start := time.Unix(1000, 0)
	for _, at := range []time.Duration{0, time.Nanosecond, d / 8, d/4 - time.Nanosecond, d / 4, 3 * d / 4, d - time.Nanosecond} {
		ds := []*Dest{NewDest(0, io.Discard)}
		last, since := []int64{0}, []time.Time{start}
		progressed := false
		var evictedAt time.Duration
		for k := 1; k < 100 && evictedAt == 0; k++ {
			now := time.Duration(k) * d / 4
			if !progressed && now > at {
				ds[0].written.Add(1) // progress at start+at, seen by this sample
				progressed = true
			}
			evictIdle(ds, last, since, start.Add(now), d)
			if ds[0].state() != running {
				evictedAt = now
			}
		}
		if evictedAt < at+d || evictedAt > at+d+d/4 {
			t.Errorf("last progress at %v: evicted at %v, want within [%v, %v]", at, evictedAt, at+d, at+d+d/4)
		}
	}
}
