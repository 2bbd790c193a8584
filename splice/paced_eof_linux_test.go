//go:build linux

package splice

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// eofPacer grants first to the first Take and next to every other one.
// It counts the Takes made once the destination's meter has all total
// bytes (late), and those made while the copy holds the one pipe of
// pool (held).
type eofPacer struct {
	first, next int
	met         *atomic.Int64
	total       int64
	pool        *Pool
	takes       int
	late        []int // the max of each late Take
	held        int
}

func (p *eofPacer) Take(_ context.Context, max int) (int, error) {
	p.takes++
	if p.met.Load() == p.total {
		p.late = append(p.late, max)
	}
	if pp := p.pool.TryGet(); pp == nil {
		p.held++
	} else {
		p.pool.Put(pp)
	}
	if p.takes == 1 {
		return p.first, nil
	}
	return p.next, nil
}

func (p *eofPacer) Refund(int) {}

// TestCopyPacedEOF: a paced copy from a socket whose bytes all arrived,
// and its EOF after them, reads nothing more, so it has no grant to
// wait for once it holds a grant to read with: where its first grant
// left some unread, it asks for none after the last byte; where it used
// all of it, for one (README: "waits for one more grant before it finds
// EOF"). Nor does it wait for a grant holding a pipe (README: "a copy
// waiting for a grant holds no pipe"). Each grant after the first is of
// 1000 bytes, as a Limiter whose burst is under a buffer grants.
func TestCopyPacedEOF(t *testing.T) {
	const size = 1000
	for _, tc := range []struct {
		name  string
		first int // the first grant
		late  int // the most Takes once every byte arrived
	}{
		{"grant-left", 5 * size, 0},
		{"grant-used", size, 1},
	} {
		for _, sn := range []string{"tcp", "unix"} {
			for _, dn := range []string{"tcp", "pipe"} {
				t.Run(fmt.Sprintf("%s/%s-%s", tc.name, sn, dn), func(t *testing.T) {
					a, peer := connPair(t, sn)
					if _, err := peer.Write(make([]byte, size)); err != nil {
						t.Fatal(err)
					}
					if err := peer.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
						t.Fatal(err)
					}
					var d dst
					if dn == "tcp" {
						b, bpeer := connPair(t, "tcp")
						d = drainConn(b, bpeer)
					} else {
						d = dstKinds[1].make(t)
					}
					met := new(atomic.Int64)
					de := endOf(t, d.conn, false)
					de.Meter = met
					pool := NewPool(0, 1)
					t.Cleanup(func() { pool.Close() })
					p := &eofPacer{first: tc.first, next: 1000, met: met, total: size, pool: pool}
					se := endOf(t, a.(syscall.Conn), true)
					se.Pacer = p
					var (
						n   int64
						err error
					)
					fdtest.Within(t, 10*time.Second, func() {
						n, _, err = Copy(context.Background(), de, se, -1, pool)
					})
					got := d.finish()
					if err != nil || n != size || len(got) != size {
						t.Fatalf("Copy = %d, %v (%d bytes arrived); want %d, nil", n, err, len(got), size)
					}
					if len(p.late) > tc.late {
						t.Errorf("%d Takes once every byte arrived (max %v); want at most %d", len(p.late), p.late, tc.late)
					}
					if p.held > 0 {
						t.Errorf("%d of %d Takes made with the pool's one pipe held", p.held, p.takes)
					}
				})
			}
		}
	}
}

// TestCopyPacedRefusedHoldsNoPipe: a paced copy whose destination
// refused the pipe's bytes (an O_DIRECT file, a socket's pages) tops
// them up with a read from the source before it writes them; a wait
// for the Pacer's grant for that read holds no pipe (README: "a copy
// waiting for a grant holds no pipe"): the pipe is empty by then.
func TestCopyPacedRefusedHoldsNoPipe(t *testing.T) {
	const size = 10000 // not a multiple of any block: the file refuses it
	fdtest.DirectRefusesUnaligned(t)
	f := directDst(t, 0)
	a, peer := connPair(t, "unix")
	if _, err := peer.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	if err := peer.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	pool := NewPool(0, 1)
	t.Cleanup(func() { pool.Close() })
	p := &eofPacer{first: size, next: 1000, met: new(atomic.Int64), total: -1, pool: pool}
	se := endOf(t, a.(syscall.Conn), true)
	se.Pacer = p
	var err error
	fdtest.Within(t, 10*time.Second, func() {
		_, _, err = Copy(context.Background(), endOf(t, f, false), se, -1, pool)
	})
	if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Copy: %v; want the file's refusal of %d bytes (EINVAL)", err, size)
	}
	if p.held > 0 {
		t.Errorf("%d of %d Takes made with the pool's one pipe held", p.held, p.takes)
	}
}
