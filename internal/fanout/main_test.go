package fanout

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a destination's goroutine, or
// a wake of its deadline, behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
