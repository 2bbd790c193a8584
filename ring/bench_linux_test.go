//go:build linux

package ring_test

import (
	"fmt"
	"testing"

	"github.com/pipes-go/pipes/ring"
)

// BenchmarkNop measures the cost of one NOP submitted and reaped, in
// batches: batch SQEs prepared, one Submit (one io_uring_enter), then the
// CQEs reaped with PeekBatchCQE. NOPs complete inline during the enter, so
// this is the ring's fixed cost per request and per system call.
func BenchmarkNop(b *testing.B) {
	for _, batch := range []int{1, 8, 64, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			r := newRing(b, 256, nil)
			cqes := make([]ring.CQE, batch)
			enters := 0
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				k := min(batch, b.N-done)
				for i := 0; i < k; i++ {
					sqe := r.GetSQE()
					sqe.PrepNop()
					sqe.UserData = uint64(done + i)
				}
				if _, err := r.Submit(); err != nil {
					b.Fatal(err)
				}
				enters++
				for got := 0; got < k; {
					n := r.PeekBatchCQE(cqes[:k-got])
					if n == 0 {
						if _, err := r.WaitCQE(); err != nil {
							b.Fatal(err)
						}
						enters++
						got++
						continue
					}
					r.CQAdvance(uint32(n))
					got += n
				}
				done += k
			}
			b.ReportMetric(float64(enters)/float64(b.N), "enters/op")
		})
	}
}
