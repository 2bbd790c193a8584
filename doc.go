// Package pipes moves bytes between file descriptors inside the kernel.
//
// Copying with read(2) and write(2) costs two system calls and two copies
// through a userspace buffer per chunk. splice(2) moves page references
// between a pipe and another file descriptor without copying them into the
// process, and io_uring submits many such operations in one system call.
// pipes chooses, per copy, the fastest of these paths that the running
// kernel offers, and falls back to a plain userspace copy for readers and
// writers that have no file descriptor.
//
// The package also offers the pipe and fifo helpers of the original pipes
// library: New, Open, Create, OpenFifo, AsyncOpenFifo, PipeReader,
// PipeWriter and Copier.
package pipes
