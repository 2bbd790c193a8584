// Command noring runs a command with io_uring_setup(2) refused, as a
// container's default seccomp profile or kernel.io_uring_disabled
// refuses it: .ci/run runs the test suite under it, so that every test
// that needs io_uring skips there and every other passes on the splice
// backend the engine falls back to.
//
//	noring [-errno N] command [args...]
//
// -errno is the error the call fails with: EPERM (1, the default, what
// Docker's profile and io_uring_disabled answer) or ENOSYS (38, a kernel
// without io_uring). The filter is inherited by every child.
package main
