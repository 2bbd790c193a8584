package splice

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestCopyPipeToSocketAccounting: a copy from a pipe into a socket moves
// its bytes through a pipe of its own (throughPipe: one from the pool,
// or one made for the copy without a pool), so that a copy that ends
// early can hold bytes the source no longer has. Whether it
// ends because its context does (the peer reads nothing) or because the
// peer goes away (reset, or closed: EPIPE), every byte the writer put in
// the source is accounted for, in order: delivered (written, and the
// peer got exactly those where it read them), dropped and reported (an
// UndeliveredError), or still in the source pipe for its next reader.
func TestCopyPipeToSocketAccounting(t *testing.T) {
	fdtest.Check(t)
	const total = 8 << 20
	for _, c := range []struct {
		network, end string
		pooled       bool
	}{
		{"tcp", "cancel", true}, {"tcp", "peer-gone", true},
		{"unix", "cancel", true}, {"unix", "peer-gone", true},
		{"tcp", "cancel", false}, {"unix", "peer-gone", false},
	} {
		network, end := c.network, c.end
		name := network + "/" + end
		if !c.pooled {
			name += "/no-pool"
		}
		t.Run(name, func(t *testing.T) {
			var pool *Pool
			if c.pooled {
				pool = NewPool(0, 2)
				defer pool.Close()
			}
			data := fdtest.Random(total)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			fed := fdtest.WriteAndClose(w, data)
			a, b := connPair(t, network)
			defer a.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got := make(chan []byte, 1)
			if end == "cancel" {
				ctx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
				defer cancel()
				go func() { <-ctx.Done(); b2, _ := io.ReadAll(b); got <- b2 }()
			} else {
				if tc, ok := b.(*net.TCPConn); ok {
					tc.SetLinger(0) // close resets
				}
				go func() {
					io.ReadFull(b, make([]byte, 64<<10)) // some bytes, then gone
					b.Close()
					got <- nil
				}()
			}
			var n int64
			fdtest.Within(t, 20*time.Second, func() {
				n, _, err = Copy(ctx, endOf(t, a.(syscall.Conn), false), endOf(t, r, true), -1, pool)
			})
			switch {
			case end == "cancel" && !errors.Is(err, context.DeadlineExceeded):
				t.Fatalf("Copy = %d, %v; want DeadlineExceeded", n, err)
			case end == "peer-gone" && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE):
				t.Fatalf("Copy = %d, %v; want ECONNRESET or EPIPE", n, err)
			}
			a.Close()
			peer := <-got
			var lost int64
			if u := (*UndeliveredError)(nil); errors.As(err, &u) {
				lost = u.N
			}
			rest, rerr := io.ReadAll(r)
			<-fed
			if rerr != nil {
				t.Fatal(rerr)
			}
			if n+lost+int64(len(rest)) != total || !bytes.Equal(rest, data[n+lost:]) {
				t.Fatalf("Copy = %d, %v; the source holds %d bytes: %d of %d unaccounted for",
					n, err, len(rest), total-n-lost-int64(len(rest)), total)
			}
			if end == "cancel" && !bytes.Equal(peer, data[:n]) {
				t.Errorf("the peer got %d bytes, Copy reported %d written", len(peer), n)
			}
			if pool == nil {
				return
			}
			if st := pool.Stats(); st.Created == 0 || st.InUse != 0 {
				t.Errorf("pool after the copy: %+v; want a pipe made, none in use", st)
			}
		})
	}
}

// TestPipeToSocketThroughOwnPipe: a copy from a pipe into a socket takes
// the source's bytes into a pipe of its own (the pool's, or one made for
// the copy without a pool) and sends from there, never splicing the
// source pipe straight into the socket, which would hold the source's
// lock for each send and can leave a message's tail unsent
// (throughPipe). Seen from outside: with the peer reading nothing, the
// source pipe empties into the copy's pipe although the socket took far
// less, and the copy, ended by its context, reports the bytes it held
// as undelivered. The socket's send buffer is kept small, so that what
// it takes after the context ended (without waiting) cannot be all.
func TestPipeToSocketThroughOwnPipe(t *testing.T) {
	fdtest.Check(t)
	const total = 768 << 10
	for _, pooled := range []bool{true, false} {
		name := "pool"
		if !pooled {
			name = "no-pool"
		}
		t.Run(name, func(t *testing.T) {
			var pool *Pool
			if pooled {
				pool = NewPool(0, 1)
				defer pool.Close()
			}
			r, w := bigPipe(t)
			data := fdtest.Random(total)
			if n, err := w.Write(data); err != nil || n != total { // the pipe holds it all
				t.Fatalf("Write = %d, %v", n, err)
			}
			a, b := connPair(t, "unix")
			defer a.Close()
			defer b.Close()
			adv23Sndbuf(t, a.(syscall.Conn), 64<<10)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := goCopy(ctx, endOf(t, a.(syscall.Conn), false), endOf(t, r, true), -1, pool)
			var res copyResult
			fdtest.Within(t, 20*time.Second, func() {
				for pipeBytes(t, r) > 0 {
					time.Sleep(5 * time.Millisecond)
				}
				cancel()
				res = <-done
			})
			var lost int64
			if u := (*UndeliveredError)(nil); errors.As(res.err, &u) {
				lost = u.N
			}
			if !errors.Is(res.err, context.Canceled) || lost == 0 || res.n+lost != total {
				t.Fatalf("Copy = %d, %v (%d undelivered); want Canceled, with the %d bytes not sent undelivered", res.n, res.err, lost, total-res.n)
			}
			a.Close()
			got, err := io.ReadAll(b)
			if err != nil || !bytes.Equal(got, data[:res.n]) {
				t.Fatalf("the peer got %d bytes (%v); Copy reported %d written", len(got), err, res.n)
			}
		})
	}
}

// pipeBytes returns the bytes in the pipe r reads (FIONREAD).
func pipeBytes(t *testing.T, r *os.File) int {
	rc, err := r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	rc.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), unix.TIOCINQ) })
	if err != nil {
		t.Fatal(err)
	}
	return n
}
