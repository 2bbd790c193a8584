package pipes

import "os"

// OpenFifoResult carries the result of an OpenFifo run by AsyncOpenFifo.
// R is nil unless the fifo was opened for reading, W unless for writing.
type OpenFifoResult struct {
	R   *PipeReader
	W   *PipeWriter
	Err error
}

// Open opens the fifo at path for reading, without blocking: it is
// OpenFifo(path, os.O_RDONLY, 0). Read and WriteTo wait for a writer to
// connect and write, and return io.EOF once the writers that connected
// have all closed. Use Create to make the fifo if it may not exist.
func Open(path string) (*PipeReader, error) {
	r, _, err := OpenFifo(path, os.O_RDONLY, 0)
	return r, err
}

// Create opens the fifo at path for reading and writing, creating it with
// mode 0666 (before umask) if it does not exist: OpenFifo(path,
// os.O_RDWR|os.O_CREATE, 0666). It never blocks. The reader sees no EOF
// while the returned writer is open, and EOF once it and any other writer
// are closed.
func Create(path string) (*PipeReader, *PipeWriter, error) {
	return OpenFifo(path, os.O_RDWR|os.O_CREATE, 0o666)
}
