package pipes

import (
	"testing"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestMain fails the run if any test leaves a goroutine behind. The
// default engine lives for the whole process by design: it is closed
// first, so that its goroutines are checked too.
func TestMain(m *testing.M) {
	fdtest.VerifyMain(m, func() error { return DefaultEngine().Close() })
}
