package uring

import (
	"context"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
	"github.com/pipes-go/pipes/splice"
)

// TestCancelledWarmAsksBounded cancels Warmers' reads of cold files
// while they wait for the disk. A buffered READ waiting for its pages is
// where no IORING_OP_ASYNC_CANCEL finds it (-ENOENT) and completes on its
// own; the loop asked again at once after each -ENOENT, one
// io_uring_enter after another, for as long as the disk took: a busy
// loop on the ring's thread for every cancelled cold read. Each op now
// gets at most cancelAsks asks, so a cancelled chain of two READs costs
// at most 2*cancelAsks cancel SQEs besides its own.
func TestCancelledWarmAsksBounded(t *testing.T) {
	d, st := newTestDriverWith(t, 2, 0, 1<<20) // no table: pins are duplicates, no FILES_UPDATE
	const size = 4 << 20
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var sqes, cancelled uint64
	for range 8 {
		f := testFile(t, fdtest.Random(size))
		if n := fdtest.CachedPages(t, f, size); n > 0 {
			t.Skipf("%d pages still in the page cache after POSIX_FADV_DONTNEED (tmpfs?)", n)
		}
		p, err := d.pin(rawConn(t, f))
		if err != nil {
			t.Fatal(err)
		}
		before := st.SQEs.Load()
		// Read in the whole guard, then the chunk's last page, with no
		// mark read between (a step past the chunk): a chain of two
		// READs, whatever the device reads ahead. The ctx is done
		// before the loop submits them.
		_, err = d.warm(ctx, p, 0, 1<<20, 2<<20, 2<<20)
		d.unpin(p)
		if err == nil {
			continue // the chain was done before the select saw ctx
		}
		cancelled++
		sqes += st.SQEs.Load() - before
	}
	if cancelled == 0 {
		t.Skip("no chain was cancelled")
	}
	if most := cancelled * (2 + 2*cancelAsks); sqes > most {
		t.Errorf("%d cancelled chains of 2 READs took %d SQEs; want at most %d", cancelled, sqes, most)
	}
}

// TestChainInOneSubmission runs a hardlinked chain of two ops on a ring
// asked for one SQE: POLL_ADD on an empty pipe, then SPLICE from it. The
// kernel ends a link at the end of a submission, so a chain split over
// two would run its SPLICE at once (-EAGAIN from the empty pipe), not
// after the poll: the driver's SQ must hold its longest chain.
func TestChainInOneSubmission(t *testing.T) {
	fdtest.Check(t)
	pool := splice.NewPool(64<<10, 1)
	defer pool.Close()
	st := new(Counters)
	d, err := New(Config{Entries: 1, Pool: pool, Closed: errTestClosed}, st)
	if err != nil {
		t.Skipf("io_uring refused: %v", err)
	}
	defer d.Close()
	r, w := testPipe(t)
	c := pollThenSplice(t, r)
	if err := d.submitChain(c); err != nil {
		t.Fatal(err)
	}
	for st.SQEs.Load() < 2 { // both in the kernel before the bytes
		time.Sleep(time.Millisecond)
	}
	if _, err := w.Write([]byte("linked")); err != nil {
		t.Fatal(err)
	}
	<-c.done
	if c.ops[0].res < 0 || c.ops[1].res != int32(len("linked")) {
		t.Errorf("POLL_ADD, SPLICE = %d, %d; want the SPLICE to move %d bytes after the poll", c.ops[0].res, c.ops[1].res, len("linked"))
	}
}
