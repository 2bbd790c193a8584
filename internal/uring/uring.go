// Package uring is the io_uring driver of package pipes: one goroutine per
// ring, locked to its OS thread, that batches the chains of operations
// copies hand it into io_uring_enter calls, reaps their completions and
// cancels them; the registered-file table that pins the callers'
// descriptors; and the two mechanisms that run on it (a Warmer that
// reads a sendfile copy's uncached chunks into the page cache, and
// CopyReads, reads into a pipe drained with splice(2)).
//
// It holds no policy: which copy goes to the ring is package pipes'
// decision (engine_linux.go). It stands on package ring (the ABI) and
// package splice (pipes, the pool, splice(2)), and never imports pipes:
// what it needs from the engine comes in Config, the counters it keeps
// are a Counters the engine owns, and the ends of a copy are
// splice.Ends.
package uring

import "sync/atomic"

// Counters are the ring's part of an engine's statistics. The engine owns
// them (and reads them for its Stats); the driver only adds.
type Counters struct {
	SQEs        atomic.Uint64 // SQEs submitted
	Enters      atomic.Uint64 // io_uring_enter calls made to submit them; with SQPOLL, hand-offs to the SQ thread and waits for room
	CQEs        atomic.Uint64 // completions reaped
	CachedReads atomic.Uint64 // chunks of ring copies and Warmers found in the page cache
	Warms       atomic.Uint64 // chunks Warmers had the ring read into the page cache
	Turns       atomic.Uint64 // calls sending a cached chunk that took a CachedSenders turn
}
