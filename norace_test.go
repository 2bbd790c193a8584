//go:build !race

package pipes

const raceEnabled = false
