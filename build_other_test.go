//go:build !linux || pipes_portable

package pipes

// kernelBuild: this build has no kernel paths, every copy runs in
// userspace (off Linux, or on Linux with the pipes_portable tag).
const kernelBuild = false
