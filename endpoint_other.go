//go:build !linux || pipes_portable

package pipes

// Off Linux there is no splice(2): no reader or writer is an endpoint and
// every copy runs in userspace.

// socketError is the error pending on v's socket; unknown here.
func socketError(any) error { return nil }

// tcpAborted reports whether v's TCP connection was reset; unknown here.
func tcpAborted(any) bool { return false }

// fileAtEOF reports whether v is a regular file at its end; unknown here.
func fileAtEOF(any) (eof, file bool) { return false, false }

// sameFile reports whether a and b are one file; unknown here.
func sameFile(a, b any) (kind string, same bool) { return "", false }
