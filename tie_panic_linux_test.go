//go:build !pipes_portable

package pipes

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestReview31JoinClosedSetterPanicLeavesDeadline: a relay direction
// whose copy starts after the relay's context has ended joins its tie's
// Group closed already, and Join wakes its ends at once, in the copy's
// goroutine. Where one end's deadline setter panics there, the panic
// leaves interrupt before its stop is deferred: the other end's deadline,
// set in the past, is never cleared. Before ties, the wake ran in an
// AfterFunc, recovered, and Stop cleared both deadlines before raising
// the panic again.
func TestReview31JoinClosedSetterPanicLeavesDeadline(t *testing.T) {
	fdtest.Check(t)
	const val = "SetReadDeadline"
	e := newTestEngine(t)
	a, pa := tcpPair(t)
	c, pc := tcpPair(t)
	closeAtEnd(t, a, pa, c, pc)
	b := newPanicDeadlines(c, val, true, false) // b's read setter panics on a wake
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	late := RelayOption(func(cfg *relayConfig) {
		cfg.beforeCopy = func(dir int) {
			if dir == dirBToA {
				cancel()
			}
			// The tie's Group is closed by parentDone, in a goroutine
			// of its own, once the context has ended.
			time.Sleep(100 * time.Millisecond)
		}
	})
	got := inCaller(func() { e.RelayWith(ctx, a, b, late) })
	select {
	case p := <-got:
		if p != val {
			t.Fatalf("the relay's caller recovered %v, want %q", p, val)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not end")
	}
	// a was the b->a direction's destination: its write deadline must
	// have been cleared.
	if _, err := a.Write([]byte("again")); err != nil {
		t.Fatalf("writing a after the relay: %v (a deadline left behind)", err)
	}
	buf := make([]byte, 5)
	pa.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(pa, buf); err != nil || string(buf) != "again" {
		t.Fatalf("a's peer read %q, %v", buf, err)
	}
}

// oncePanicDeadlines is a TCP connection whose read deadline setter
// panics with val the first time it is asked for a deadline in the past
// (without setting it), and works after.
type oncePanicDeadlines struct {
	*net.TCPConn
	val  string
	woke chan struct{}
	once *sync.Once
}

func (p oncePanicDeadlines) SetReadDeadline(t time.Time) error {
	if !t.IsZero() {
		first := false
		p.once.Do(func() { first = true })
		if first {
			close(p.woke)
			panic(p.val)
		}
	}
	return p.TCPConn.SetReadDeadline(t)
}

// TestReview31SecondGroupCloseDropsPanic: a tie's Group is closed once
// per way the tie ends (the caller's context through parentDone, the
// engine's Close through Wake, each failure of a relay through end), and
// each Close wakes every member again and overwrites what its previous
// Wake panicked with. A deadline setter of the caller's that panicked
// when the context's end woke the copy, and not when Close woke it
// again, has its panic dropped: CopyContext returns an error, and the
// panic never reaches its caller.
func TestReview31SecondGroupCloseDropsPanic(t *testing.T) {
	fdtest.Check(t)
	const val = "SetReadDeadline"
	e, err := NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	c, peer := tcpPair(t)
	closeAtEnd(t, c, peer)
	src := oncePanicDeadlines{TCPConn: c, val: val, woke: make(chan struct{}), once: new(sync.Once)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := inCaller(func() { e.CopyContext(ctx, io.Discard, src) })
	waitInFlight(t, e, 1)
	time.Sleep(20 * time.Millisecond) // the copy waits for input
	cancel()
	<-src.woke // the first wake panicked, and did not wake the copy
	go e.Close()
	var p any
	select {
	case p = <-got:
	case <-time.After(2 * time.Second):
		// Nothing woke the copy again (the tree before ties): end it.
		peer.Close()
		p = <-got
	}
	if p != val {
		t.Errorf("the caller recovered %v; want the setter's panic %q", p, val)
	}
	closeWithin(t, e, 10*time.Second)
}

// TestReview31TieEndRaces ends copies and relays on a tie at random
// points of their start (the caller's cancel with a cause, its context's
// deadline, the engine's Close): each must return within 10 s with the
// error that says which, and leave no deadline on its ends.
func TestReview31TieEndRaces(t *testing.T) {
	cause := errors.New("the caller's cause")
	for _, kind := range []string{"Relay", "CopyContext", "CopyAsync"} {
		for _, end := range []string{"cancel", "Close", "timeout"} {
			t.Run(kind+"/"+end, func(t *testing.T) {
				for i := range 40 {
					e := newTestEngine(t)
					a, pa := tcpPair(t)
					b, pb := tcpPair(t)
					d := time.Duration(rand.IntN(300)) * time.Microsecond
					ctx, cancel := context.WithCancelCause(context.Background())
					want := error(cause)
					switch end {
					case "timeout":
						var stop context.CancelFunc
						ctx, stop = context.WithTimeout(ctx, d)
						defer stop()
						want = context.DeadlineExceeded
					case "Close":
						want = ErrClosed
					}
					done := make(chan error, 1)
					switch kind {
					case "Relay":
						go func() { _, _, err := e.Relay(ctx, a, b); done <- err }()
					case "CopyContext":
						go func() { _, err := e.CopyContext(ctx, b, a); done <- err }()
					case "CopyAsync":
						f := e.CopyAsync(ctx, b, a)
						go func() { _, err := f.Wait(); done <- err }()
					}
					switch end {
					case "cancel":
						time.Sleep(d)
						cancel(cause)
					case "Close":
						time.Sleep(d)
						go e.Close()
					}
					select {
					case err := <-done:
						if !errors.Is(err, want) {
							t.Fatalf("run %d, ended after %v: %v, want an error matching %v", i, d, err, want)
						}
					case <-time.After(10 * time.Second):
						t.Fatalf("run %d: not ended 10s after %v", i, d)
					}
					cancel(nil)
					e.Close()
					checkUsable(t, a, pa)
					checkUsable(t, b, pb)
					for _, c := range []*net.TCPConn{a, pa, b, pb} {
						c.Close()
					}
				}
			})
		}
	}
}

// TestReview31PanickingOptionLeaksInFlight: RelayWith applies its
// options after it has counted the relay in flight twice (begin), so an
// option that panics (one made with reflect.MakeFunc) leaves both counts
// behind, and the engine's Close waits for ever. Before ties, options
// were applied before anything was counted.
func TestReview31PanickingOptionLeaksInFlight(t *testing.T) {
	e, err := NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	a, pa := tcpPair(t)
	b, pb := tcpPair(t)
	closeAtEnd(t, a, pa, b, pb)
	typ := reflect.TypeOf(RelayOption(nil))
	bad := reflect.MakeFunc(typ, func([]reflect.Value) []reflect.Value { panic("option") }).Interface().(RelayOption)
	func() {
		defer func() { recover() }()
		e.RelayWith(context.Background(), a, b, bad)
	}()
	closeWithin(t, e, 2*time.Second)
}
