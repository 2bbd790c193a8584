package pipes

import "io"

// kernelPair reports whether the engine's kernel paths can take a copy
// from src to dst: both expose a descriptor of a kind splice(2) moves
// (stream sockets, pipes, files, devices). *net.TCPConn and stream
// *net.UnixConn are recognised without a system call. The kernel may still
// refuse a pair (EINVAL before any byte), which then falls back to a
// userspace copy.
func kernelPair(dst io.Writer, src io.Reader) bool {
	if _, ok := readerEndpoint(src); !ok {
		return false
	}
	_, ok := writerEndpoint(dst)
	return ok
}
