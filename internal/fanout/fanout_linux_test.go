package fanout

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fd"
	"github.com/pipes-go/pipes/internal/fdtest"
)

// unixPair returns the two ends of a connected unix stream socketpair.
func unixPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	return fdtest.SocketPair(t, syscall.SOCK_STREAM)
}

// sink is a destination and what its reader received.
type sink struct {
	w      io.Writer
	out    Out // how Kernel writes to w
	closeW func()
	got    func() (int64, [32]byte) // bytes received and their SHA-256, once closeW has run
}

func rawConn(t *testing.T, c syscall.Conn) syscall.RawConn {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// drained returns a sink whose reader r is drained by a goroutine, which
// hashes what arrives: a drain that keeps pace, so that a test of
// eviction evicts only the destination it stalls.
func drained(t *testing.T, w io.Writer, out Out, r io.Reader, closeW, closeR func()) sink {
	h := sha256.New()
	var n int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, _ = io.Copy(h, r)
	}()
	t.Cleanup(func() { closeW(); <-done; closeR() })
	return sink{w: w, out: out, closeW: closeW, got: func() (int64, [32]byte) {
		<-done
		return n, [32]byte(h.Sum(nil))
	}}
}

// sinkKinds are the destinations: spliced into (a pipe, a unix socket),
// and written with Write (a writer with no descriptor).
var sinkKinds = []struct {
	name string
	make func(t *testing.T) sink
}{
	{"pipe", func(t *testing.T) sink {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		var once sync.Once
		return drained(t, w, Out{Conn: rawConn(t, w), Kind: fd.KindPipe}, r, func() { once.Do(func() { w.Close() }) }, func() { r.Close() })
	}},
	{"unix", func(t *testing.T) sink {
		a, b := unixPair(t)
		var once sync.Once
		return drained(t, a, Out{Conn: rawConn(t, a), Kind: fd.KindSocket}, b, func() { once.Do(func() { a.Close() }) }, func() { b.Close() })
	}},
	{"writer", func(t *testing.T) sink {
		// No descriptor. Read once the fan-out has returned: its
		// destinations' goroutines have then returned.
		var b bytes.Buffer
		return sink{w: &b, closeW: func() {}, got: func() (int64, [32]byte) {
			return int64(b.Len()), sha256.Sum256(b.Bytes())
		}}
	}},
}

// impls runs a fan-out of the regular file src to ds with one
// implementation.
var impls = []struct {
	name string
	run  func(ctx context.Context, t *testing.T, src *os.File, ds []*Dest, outs []Out, p Policy) error
}{
	{"userspace", func(ctx context.Context, _ *testing.T, src *os.File, ds []*Dest, _ []Out, p Policy) error {
		return RunUserspace(ctx, src, ds, p)
	}},
	{"kernel", func(ctx context.Context, t *testing.T, src *os.File, ds []*Dest, outs []Out, p Policy) error {
		k := NewKernel(ctx, Source{Conn: rawConn(t, src), Kind: fd.KindFile, Limit: -1}, p)
		defer k.Close()
		for i, d := range ds {
			k.Add(d, outs[i])
		}
		if err := k.Open(); err != nil {
			return err
		}
		handled, err := k.Run()
		if !handled {
			t.Fatal("the kernel refused a regular file source")
		}
		return err
	}},
}

func fileWith(t *testing.T, data []byte) *os.File {
	t.Helper()
	return fdtest.TempFile(t, data)
}

// TestRun: both implementations deliver every byte of a file to one
// destination of every kind, at sizes around a chunk and a buffer.
func TestRun(t *testing.T) {
	fdtest.Check(t)
	for _, impl := range impls {
		for _, size := range []int{0, 1, Chunk + 1, 1<<20 + 17} {
			t.Run(fmt.Sprintf("%s/%d", impl.name, size), func(t *testing.T) {
				data := fdtest.Random(size)
				var ds []*Dest
				var outs []Out
				var sinks []sink
				for i, k := range sinkKinds {
					s := k.make(t)
					sinks, ds, outs = append(sinks, s), append(ds, NewDest(i, s.w)), append(outs, s.out)
				}
				if err := impl.run(context.Background(), t, fileWith(t, data), ds, outs, Policy{Buffer: 128 << 10}); err != nil {
					t.Fatalf("run: %v", err)
				}
				for i, d := range ds {
					if d.Err() != nil || d.Written() != int64(size) || d.Running() {
						t.Errorf("%s: err %v, written %d, running %v; want nil, %d, false", sinkKinds[i].name, d.Err(), d.Written(), d.Running(), size)
					}
					sinks[i].closeW()
					if n, sum := sinks[i].got(); n != int64(size) || sum != sha256.Sum256(data) {
						t.Errorf("%s received %d bytes, want %d (digests match: %v)", sinkKinds[i].name, n, size, sum == sha256.Sum256(data))
					}
				}
			})
		}
	}
}

// TestStopped: a destination whose reader stops reading is evicted under
// EvictAfter, or stopped when ctx ends; its error says which, the others
// receive everything (eviction) and the write deadline that interrupted
// the stopped destination is cleared.
func TestStopped(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(8 << 20)
	cases := []struct {
		name   string
		policy Policy
		cancel bool
		want   []error // what the stalled destination's error wraps
	}{
		{"evicted", Policy{EvictAfter: time.Second, Buffer: 64 << 10}, false, []error{ErrEvicted, os.ErrDeadlineExceeded}},
		{"cancelled", Policy{Buffer: 64 << 10}, true, []error{context.Canceled}},
	}
	for _, impl := range impls {
		for _, tc := range cases {
			t.Run(impl.name+"/"+tc.name, func(t *testing.T) {
				ok := sinkKinds[1].make(t)
				stalled, peer := unixPair(t)
				defer stalled.Close()
				defer peer.Close()
				ds := []*Dest{NewDest(0, ok.w), NewDest(1, stalled)}
				outs := []Out{ok.out, {Conn: rawConn(t, stalled), Kind: fd.KindSocket}}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				if tc.cancel {
					go func() {
						// Once the stalled destination holds the other back.
						for ctx.Err() == nil && (ds[1].Written() == 0 || ds[0].Written() == ds[1].Written()) {
							time.Sleep(time.Millisecond)
						}
						cancel()
					}()
				}
				err := impl.run(ctx, t, fileWith(t, data), ds, outs, tc.policy)
				for _, want := range tc.want {
					if !errors.Is(ds[1].Err(), want) {
						t.Errorf("stalled destination: %v; want it to wrap %v", ds[1].Err(), want)
					}
				}
				if tc.cancel && !errors.Is(err, context.Canceled) {
					t.Errorf("run = %v, want context.Canceled", err)
				}
				if !tc.cancel && (err != nil || ds[0].Err() != nil || ds[0].Written() != int64(len(data))) {
					t.Errorf("run = %v; other destination: %v, %d bytes", err, ds[0].Err(), ds[0].Written())
				}
				// The deadline that woke the stalled write is cleared: a
				// write blocks until the peer reads, and then succeeds.
				go io.Copy(io.Discard, peer)
				if _, err := stalled.Write([]byte("after")); err != nil {
					t.Errorf("write after the stop: %v", err)
				}
			})
		}
	}
}

// TestStopState: a destination's life is running, then stopping once
// stopped, then exited once its goroutine has returned; the stop wakes a
// write blocked on it and its deadline is cleared on the way out.
func TestStopState(t *testing.T) {
	fdtest.Check(t)
	a, b := unixPair(t)
	defer a.Close()
	defer b.Close()
	d := NewDest(3, a)
	progress := make(chan struct{}, 1)
	if s := d.state(); s != running {
		t.Fatalf("state %v at the start, want running", s)
	}
	wrote := make(chan error, 1)
	go func() {
		d.begin()
		defer d.exit(progress)
		d.run(nil, func() {
			_, err := a.Write(make([]byte, 64<<20)) // more than the socket holds
			d.err = d.failed(err)
			wrote <- err
		})
	}()
	reason := errors.New("stop reason")
	d.stop(reason)
	if s := d.state(); s == running {
		t.Errorf("state running after stop")
	}
	if err := <-wrote; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("blocked write = %v, want os.ErrDeadlineExceeded", err)
	}
	<-progress
	if s := d.state(); s != exited || d.Err() != reason || d.Running() {
		t.Errorf("state %v, err %v after the goroutine returned; want exited, the stop reason", s, d.Err())
	}
	go io.Copy(io.Discard, b)
	if _, err := a.Write([]byte("after")); err != nil {
		t.Errorf("write after exit: %v", err)
	}
}

// TestJoinEnded: once a joinable fan-out has ended, Join fails with
// ErrEnded; a destination joined and never admitted is abandoned with it.
func TestJoinEnded(t *testing.T) {
	fdtest.Check(t)
	for _, impl := range []struct {
		name  string
		open  func(t *testing.T, ctx context.Context, src *os.File) (join func(*Dest) error, run func() error, abort func())
		fdSrc bool
	}{
		{"userspace", func(_ *testing.T, ctx context.Context, src *os.File) (func(*Dest) error, func() error, func()) {
			u := NewUserspace(ctx, Watch{})
			return u.Join, func() error { return u.Run(src) }, u.Abort
		}, false},
		{"kernel", func(t *testing.T, ctx context.Context, src *os.File) (func(*Dest) error, func() error, func()) {
			k := NewKernel(ctx, Source{Conn: rawConn(t, src), Kind: fd.KindFile, Limit: -1}, Policy{})
			if err := k.OpenJoinable(64<<10, Watch{}); err != nil {
				t.Fatal(err)
			}
			join := func(d *Dest) error { return k.Join(d, Out{}) }
			run := func() error { defer k.Close(); _, err := k.Run(); return err }
			return join, run, k.Close
		}, true},
	} {
		t.Run(impl.name+"/run", func(t *testing.T) {
			data := fdtest.Random(200 << 10)
			join, run, _ := impl.open(t, context.Background(), fileWith(t, data))
			var got bytes.Buffer // read once run has returned
			d := NewDest(0, &got)
			if err := join(d); err != nil {
				t.Fatal(err)
			}
			if err := run(); err != nil {
				t.Fatalf("run: %v", err)
			}
			if d.Err() != nil || !bytes.Equal(got.Bytes(), data) {
				t.Errorf("joined destination: %v, %d bytes; want all %d", d.Err(), got.Len(), len(data))
			}
			if err := join(NewDest(1, io.Discard)); !errors.Is(err, ErrEnded) {
				t.Errorf("Join after the end = %v, want ErrEnded", err)
			}
		})
		t.Run(impl.name+"/abort", func(t *testing.T) {
			join, _, abort := impl.open(t, context.Background(), fileWith(t, fdtest.Random(10)))
			d := NewDest(0, io.Discard)
			if err := join(d); err != nil {
				t.Fatal(err)
			}
			abort()
			if d.state() != exited || !errors.Is(d.Err(), ErrEnded) {
				t.Errorf("abandoned destination: state %v, err %v", d.state(), d.Err())
			}
		})
	}
}

// panicPacer is a source Pacer whose Take panics.
type panicPacer struct{}

func (panicPacer) Take(context.Context, int) (int, error) { panic("Take") }
func (panicPacer) Refund(int)                             {}

// TestKernelCoordinatorPanicBeforeStart: a panic in the coordinator
// before it started the destinations' goroutines (here the source's
// Pacer, at the first read) reaches Run's caller. settle waited for the
// goroutines of every destination, and these never ran: Run hung.
func TestKernelCoordinatorPanicBeforeStart(t *testing.T) {
	fdtest.Check(t)
	src := fileWith(t, fdtest.Random(64<<10))
	k := NewKernel(context.Background(), Source{Conn: rawConn(t, src), Kind: fd.KindFile, Limit: -1, Pacer: panicPacer{}}, Policy{})
	defer k.Close()
	k.Add(NewDest(0, io.Discard), Out{})
	if err := k.Open(); err != nil {
		t.Fatal(err)
	}
	got := make(chan any, 1)
	go func() {
		defer func() { got <- recover() }()
		k.Run()
	}()
	select {
	case p := <-got:
		if p != "Take" {
			t.Errorf("Run panicked with %v; want the Pacer's panic", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run still running 10s after its coordinator panicked")
	}
}
