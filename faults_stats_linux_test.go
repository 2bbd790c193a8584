//go:build linux

package pipes

// poolExhausted returns s.PoolExhausted: the copy rounds that went through
// a userspace buffer because no pooled pipe was free. TestFaultPoolExhaustion
// requires it to count the fallback.
func poolExhausted(s Stats) uint64 {
	// TODO: s.PoolExhausted once it exists
	return 0
}
