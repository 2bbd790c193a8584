package pipes_test

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/pipes-go/pipes"
)

// A Limiter paces copies by a byte rate on their kernel path; the same
// Limiter shared by several copies limits their sum.
func ExampleRateLimit() {
	limit := pipes.NewLimiter(64<<20, 0) // 64 MiB/s for every copy it paces
	var dst bytes.Buffer
	src := strings.NewReader(strings.Repeat("x", 1<<20))
	n, err := pipes.Copy(&dst, pipes.RateLimit(src, limit))
	fmt.Println(n, err)
	// Output: 1048576 <nil>
}
