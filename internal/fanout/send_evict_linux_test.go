package fanout

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fd"
	"github.com/pipes-go/pipes/internal/fdtest"
)

// runKernel30 runs a Kernel fan-out of src to ds (unix sockets), sending
// from the file (send) or teeing, and returns Run's error and whether
// the fan-out sent.
func runKernel30(ctx context.Context, t *testing.T, src *os.File, limit int64, send bool, ds []*Dest, conns []*net.UnixConn, p Policy) (*Kernel, error) {
	t.Helper()
	k := NewKernel(ctx, Source{Conn: rawConn(t, src), Kind: fd.KindFile, Limit: limit, Send: send}, p)
	defer k.Close()
	for i, d := range ds {
		k.Add(d, Out{Conn: rawConn(t, conns[i]), Kind: fd.KindSocket})
	}
	if err := k.Open(); err != nil {
		t.Fatal(err)
	}
	if k.sending != send {
		t.Fatalf("sending %v, want %v", k.sending, send)
	}
	handled, err := k.Run()
	if !handled {
		t.Fatal("not handled")
	}
	return k, err
}

// TestReview30SendTrickleEvicted: under EvictAfter, a destination whose
// reader takes a few KiB at a time, far slower than the others, keeps
// them waiting with no room for the next chunk and is evicted, as the
// teeing fan-out evicts it. Sending, every few KiB it takes reset the
// eviction deadline: it held the others to its pace until the end.
func TestReview30SendTrickleEvicted(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(40 << 20)
	for _, send := range []bool{false, true} {
		t.Run(map[bool]string{false: "tee", true: "send"}[send], func(t *testing.T) {
			var ds []*Dest
			var conns []*net.UnixConn
			var wg sync.WaitGroup
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i := range 3 {
				a, b := unixPair(t)
				defer a.Close()
				ds, conns = append(ds, NewDest(i, a)), append(conns, a)
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer b.Close()
					if i != 2 {
						io.Copy(io.Discard, b)
						return
					}
					buf := make([]byte, 8<<10)
					for ctx.Err() == nil {
						if _, err := b.Read(buf); err != nil {
							return
						}
						time.Sleep(5 * time.Millisecond)
					}
				}()
			}
			p := Policy{EvictAfter: 250 * time.Millisecond, Buffer: 1 << 20, BufferDefault: true}
			_, err := runKernel30(ctx, t, fileWith(t, data), -1, send, ds, conns, p)
			for _, c := range conns {
				c.Close()
			}
			wg.Wait()
			if err != nil {
				t.Errorf("Run: %v", err)
			}
			for i, d := range ds[:2] {
				if d.Err() != nil || d.Written() != int64(len(data)) {
					t.Errorf("destination %d: %v, %d bytes", i, d.Err(), d.Written())
				}
			}
			if !errors.Is(ds[2].Err(), ErrEvicted) {
				t.Errorf("trickling destination: %v, %d bytes; want ErrEvicted", ds[2].Err(), ds[2].Written())
			}
		})
	}
}
