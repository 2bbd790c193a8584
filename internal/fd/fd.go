// Package fd is the descriptor layer of package pipes, below the root and
// package splice: what kind of file a descriptor is (Inspect), pinning a
// caller's descriptor with a duplicate of our own (Pin), whether
// the kernel refuses to splice a pair (Refused), putting back bytes a
// copy read from a file and did not deliver (Unread), the error pending
// on a socket and its cookie (SocketError, SocketCookie), the error of a
// descriptor closed under a call made to match os.ErrClosed (ClosedErr),
// and the one
// way pipes interrupts a wait blocked on a caller's value: a deadline in
// the past, cleared afterwards (Deadlines, Waker, Interrupt).
//
// It holds no policy, and imports neither pipes nor splice: both stand on
// it.
package fd
