// Package uring is the io_uring driver of package pipes: one goroutine per
// ring, locked to its OS thread, that batches the chains of operations
// copies hand it into io_uring_enter calls, reaps their completions and
// cancels them; and the two copy mechanisms that run on it (linked
// chains to a socket, reads into a pipe drained with splice(2)).
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
	Enters      atomic.Uint64 // io_uring_enter calls made to submit them
	CQEs        atomic.Uint64 // completions reaped
	CachedReads atomic.Uint64 // reads of ring copies served by splice(2) from the page cache
}
