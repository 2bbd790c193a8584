package pipes

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind. The
// default engine lives for the whole process by design: it is closed
// first, so that its goroutines are checked too.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := DefaultEngine().Close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing the default engine:", err)
			code = 1
		}
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
