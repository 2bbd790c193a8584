//go:build linux

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestAdvSharedSourceFile runs two copies of one *os.File at once. As
// with io.Copy, whose reads (read(2), sendfile(2)) of an *os.File hold
// its read lock, the two must share the file's bytes: each byte
// delivered once, by one of them, and the offset left at the end.
// sendfile(2) and splice(2) with a nil offset move the file's offset
// without the kernel's f_pos lock, and the ring's reads name explicit
// offsets: unserialized, both copies delivered bytes twice.
func TestAdvSharedSourceFile(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(2<<20 + 5)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, sk := range []string{"pipe", "unix", "tcp", "writer"} {
			t.Run(ec.name+"/"+sk, func(t *testing.T) {
				for round := range 4 {
					f := fdtest.TempFile(t, data)
					if round%2 == 1 {
						fdtest.Evict(t, f)
					}
					var wg sync.WaitGroup
					got := make([][]byte, 2)
					ns := make([]int64, 2)
					for i := range 2 {
						wg.Add(1)
						go func() {
							defer wg.Done()
							w, finish := advSink(t, sk)
							var err error
							if ns[i], err = e.Copy(w, f); err != nil {
								t.Errorf("round %d, copy %d: %v", round, i, err)
							}
							got[i] = finish()
						}()
					}
					wg.Wait()
					if ns[0] != int64(len(got[0])) || ns[1] != int64(len(got[1])) || ns[0]+ns[1] != int64(len(data)) {
						t.Fatalf("round %d: copies of %d and %d bytes (destinations got %d and %d) from one file of %d", round, ns[0], ns[1], len(got[0]), len(got[1]), len(data))
					}
					if off, _ := f.Seek(0, io.SeekCurrent); off != int64(len(data)) {
						t.Errorf("round %d: offset %d after the copies", round, off)
					}
				}
			})
		}
	}
}

// TestAdvSharedFileStalledPeer runs two copies of one *os.File, the
// first into a destination that reads nothing: the second must still
// run to the file's end (a copy holds the file's read lock for one read,
// not while it waits for its destination), and together they must
// deliver no byte twice. Cancelling the first then ends it.
func TestAdvSharedFileStalledPeer(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(4 << 20)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, stalled := range []string{"tcp", "unix", "pipe"} {
			for _, sk := range []string{"tcp", "pipe"} {
				t.Run(fmt.Sprintf("%s/%s-stalled/%s", ec.name, stalled, sk), func(t *testing.T) {
					f := fdtest.TempFile(t, data)
					ws, _, finishStalled := gatedSink(t, stalled, nil)
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					first := e.CopyAsync(ctx, ws, f)
					for first.Written() == 0 && !isDone(first) {
						time.Sleep(time.Millisecond)
					}
					w, finish := advSink(t, sk)
					n, err := e.Copy(w, f)
					got := finish()
					cancel()
					n1, err1 := first.Wait()
					got1, _ := finishStalled()
					if err != nil || n != int64(len(got)) {
						t.Errorf("second copy = (%d, %v), destination got %d bytes", n, err, len(got))
					}
					if !errors.Is(err1, context.Canceled) && err1 != nil || n1 != got1 {
						t.Errorf("stalled copy = (%d, %v), destination got %d bytes", n1, err1, got1)
					}
					if n+n1 > int64(len(data)) {
						t.Errorf("copies of %d and %d bytes from a file of %d", n1, n, len(data))
					}
				})
			}
		}
	}
}

// TestAdvSharedFileUnreadAfterPeer: a ring-reads copy of a shared
// *os.File is cancelled with bytes it read still in its pipe, after
// another copy of the file has read past them. Moving the offset back
// then would hand the other copy bytes it had already delivered, and
// leave the cancelled copy's bytes to nobody: the other copy's output
// must stay one run of the file's bytes, to its end.
func TestAdvSharedFileUnreadAfterPeer(t *testing.T) {
	fdtest.Check(t)
	e, err := NewEngine(WithRingMinConcurrency(0))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.Backend() != BackendIOUring {
		t.Skip("no io_uring: no ring reads")
	}
	data := fdtest.Random(8 << 20)
	f := fdtest.TempFile(t, data)
	wa, _, finishA := gatedSink(t, "pipe", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := e.CopyAsync(ctx, wa, f)
	for first.Written() == 0 && !isDone(first) {
		time.Sleep(time.Millisecond)
	}
	pr, wb, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	gate := make(chan struct{})
	gotB := make(chan []byte, 1)
	go func() {
		<-gate
		b, _ := io.ReadAll(pr)
		gotB <- b
	}()
	second := e.CopyAsync(context.Background(), wb, f)
	for second.Written() == 0 && !isDone(second) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	n1, err1 := first.Wait()
	close(gate)
	n2, err2 := second.Wait()
	wb.Close()
	got := <-gotB
	got1, _ := finishA()
	if !errors.Is(err1, context.Canceled) || n1 != got1 {
		t.Errorf("cancelled copy = (%d, %v), destination got %d bytes", n1, err1, got1)
	}
	if err2 != nil || n2 != int64(len(got)) {
		t.Errorf("second copy = (%d, %v), destination got %d bytes", n2, err2, len(got))
	}
	if len(got) > len(data) || !bytes.Equal(got, data[len(data)-len(got):]) {
		t.Errorf("the second copy's %d bytes are not the file's last %d: bytes delivered twice", len(got), len(got))
	}
}
