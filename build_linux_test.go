//go:build !pipes_portable

package pipes

// kernelBuild: this build has the kernel paths (splice(2), tee(2),
// io_uring), the Linux one.
const kernelBuild = true
