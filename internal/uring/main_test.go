package uring

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a driver's goroutines behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
