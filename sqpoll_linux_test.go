//go:build !pipes_portable

package pipes

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestSQPollStats runs copies of cold files through the ring (into
// pipes: ring reads; into sockets: warmed sendfile), on a ring that polls
// its submission queue from a kernel thread and on one that does not,
// with the default queue and with queues of 4 and 2 SQEs (full most of
// the time; 2 is the least, a Warmer's chain of two READs fills it),
// then closes the engine. Every SQE submitted has exactly one
// completion and none is left in flight after Close, so Stats.SQEs must
// equal Stats.CQEs: an SQE is counted once, however long the SQ thread
// takes to pick it up.
func TestSQPollStats(t *testing.T) {
	fdtest.Check(t)
	const copies = 16
	data := fdtest.Random(3<<20 + 17)
	paths := dataFiles(t, copies/2, data)
	for _, sqPoll := range []bool{false, true} {
		for _, entries := range []uint32{0, 4, 1} {
			t.Run(fmt.Sprintf("sqpoll=%v/entries=%d", sqPoll, entries), func(t *testing.T) {
				skipUnlessRingReadsTempDir(t)
				e, err := NewEngine(WithSQPoll(sqPoll), WithRingEntries(entries), WithRingMinConcurrency(0))
				if err != nil {
					t.Fatal(err)
				}
				if e.Backend() != BackendIOUring {
					e.Close()
					t.Skipf("backend is %s: %s", e.Backend(), e.Stats().RingSetup)
				}
				evictAll(t, paths)
				var wg sync.WaitGroup
				for i := range copies {
					wg.Add(1)
					go func() {
						defer wg.Done()
						kind := []string{"pipe", "unix", "tcp", "writer"}[i%4]
						w, finish := advSink(t, kind)
						n, err := e.Copy(w, openPath(t, paths[i%len(paths)], 0))
						if got := finish(); err != nil || n != int64(len(data)) || !bytes.Equal(got, data) {
							t.Errorf("copy %d into %s: (%d, %v), destination got %d bytes", i, kind, n, err, len(got))
						}
					}()
				}
				wg.Wait()
				if err := e.Close(); err != nil {
					t.Fatal(err)
				}
				st := e.Stats()
				if st.SQEs == 0 {
					t.Fatalf("no SQE submitted: %+v", st)
				}
				if st.SQEs != st.CQEs {
					t.Errorf("Stats after Close: %d SQEs, %d CQEs (%d Enters): every SQE has one CQE", st.SQEs, st.CQEs, st.Enters)
				}
			})
		}
	}
}
