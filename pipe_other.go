//go:build !linux || pipes_portable

package pipes

import (
	"io"
	"os"
)

// New creates a pipe and returns its read and write ends. Bytes written to
// w are read from r. Off Linux it is os.Pipe.
func New() (*PipeReader, *PipeWriter, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	return &PipeReader{f: r}, &PipeWriter{f: w}, nil
}

// ReadFrom copies from src into the pipe until EOF on src or an error, as
// io.ReaderFrom. Off Linux there is no splice(2): it copies through a
// userspace buffer. An *io.LimitedReader is honoured.
func (w *PipeWriter) ReadFrom(src io.Reader) (int64, error) {
	if w == nil {
		return 0, os.ErrInvalid // as a nil *os.File's, before reading src
	}
	return io.Copy(struct{ io.Writer }{w}, src)
}

// WriteTo copies from the pipe into dst until EOF or an error, as
// io.WriterTo. Off Linux it copies through a userspace buffer.
func (r *PipeReader) WriteTo(dst io.Writer) (int64, error) {
	if r == nil {
		return 0, os.ErrInvalid
	}
	return io.Copy(dst, struct{ io.Reader }{r})
}
