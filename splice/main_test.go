//go:build linux

package splice

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a goroutine behind. When the
// binary is re-executed as an unprivileged user (see
// TestPoolUnprivileged), it runs only that child's checks.
func TestMain(m *testing.M) {
	if os.Getenv(unprivEnv) != "" {
		os.Exit(unprivChild())
	}
	goleak.VerifyTestMain(m)
}
