package fdtest

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// VerifyMain runs the tests of m and fails the run if any test leaves a
// goroutine behind. closeFirst (nil: none) runs before the check, for
// what lives for the whole process by design, such as the default
// engine, so that its goroutines are checked too. It is a TestMain's
// whole body: it exits the process.
func VerifyMain(m *testing.M, closeFirst func() error) {
	code := m.Run()
	if code == 0 {
		if closeFirst != nil {
			if err := closeFirst(); err != nil {
				fmt.Fprintln(os.Stderr, "before the goroutine check:", err)
				code = 1
			}
		}
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
