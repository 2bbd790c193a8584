// Package splice moves bytes between file descriptors with splice(2) and
// tee(2), without copying them through userspace.
//
// It offers three layers, each usable alone:
//
//   - Splice and Tee: thin wrappers of the system calls that retry EINTR
//     and return the errno as a syscall.Errno, as golang.org/x/sys/unix
//     does.
//   - Pipe and Pool: kernel pipes used as splice buffers, sized with
//     F_SETPIPE_SZ, and a bounded pool of them that never hands out a pipe
//     holding stale bytes.
//   - Copy: a copy loop between any two descriptors the kernel can splice,
//     run inside syscall.RawConn callbacks so that every system call holds
//     Go's reference to the descriptor and waits for readiness on the Go
//     netpoller; beside it Sendfile, a regular file to a stream socket
//     with sendfile(2), and Drain, which empties into a descriptor a pipe
//     the caller filled.
//
// splice(2) needs a pipe on at least one side: a copy between two
// non-pipes (file -> socket, socket -> socket) goes through an
// intermediate pipe taken from a Pool.
//
// The package is Linux only; elsewhere it is empty and callers copy in
// userspace.
package splice
