//go:build race

package pipes

// The race detector allows at most 8128 live goroutines: the stress test
// runs at full size only without it.
const raceEnabled = true
