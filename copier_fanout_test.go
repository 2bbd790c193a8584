package pipes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// copierFans are the fan-outs a Copier runs on: NewCopier's (the kernel's
// on Linux) and the userspace one (the only one off Linux).
var copierFans = []struct {
	name  string
	start func(context.Context, *PipeReader, ...*PipeWriter) (*Copier, error)
	// readsOnlyForWriters: once the last writer has left, nothing more
	// is read, even by a read that was already waiting for input. The
	// userspace fan-out cannot take back a read(2) that is waiting.
	readsOnlyForWriters bool
}{
	{"NewCopier", NewCopier, kernelBuild},
	{"userspace", func(ctx context.Context, r *PipeReader, ws ...*PipeWriter) (*Copier, error) {
		if ctx == nil {
			ctx = context.Background()
		}
		return startCopier(ctx, r, newUserspaceCopierFan(ctx, r), ws)
	}, false},
}

// startWriterless starts a Copier with start that has no writer: none
// added (allLeft false), or one that has left, evicted once its reader
// closed (allLeft true). It returns the Copier, its source and the
// source's write end.
func startWriterless(t *testing.T, start func(context.Context, *PipeReader, ...*PipeWriter) (*Copier, error), allLeft bool) (*Copier, *PipeReader, *PipeWriter) {
	t.Helper()
	src, in := ptNewPipe(t)
	var ws []*PipeWriter
	if allLeft {
		gone := newCopierSinkT(t, 0) // its reader closes at once
		<-gone.done
		ws = append(ws, gone.w)
	}
	c, err := start(context.Background(), src, ws...)
	if err != nil {
		t.Fatal(err)
	}
	if allLeft {
		writeAll(t, in, []byte("x")) // the chunk that finds the writer gone
		for deadline := time.Now().Add(time.Minute); c.Writers() != 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the writer whose reader closed was not evicted")
			}
		}
	}
	return c, src, in
}

func copierData(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16), 'c'}).Read(b)
	return b
}

// copierSinkT is a writer of a Copier whose reader collects what arrives.
// With a limit >= 0 the reader reads that many bytes and closes its end,
// so that the writer fails (EPIPE) and leaves the copier.
type copierSinkT struct {
	r    *PipeReader
	w    *PipeWriter
	mu   sync.Mutex
	got  bytes.Buffer
	done chan struct{}
}

func newCopierSinkT(t *testing.T, limit int64) *copierSinkT {
	t.Helper()
	s := &copierSinkT{done: make(chan struct{})}
	s.r, s.w = ptNewPipe(t)
	go func() {
		defer close(s.done)
		var src io.Reader = struct{ io.Reader }{s.r}
		if limit >= 0 {
			src = io.LimitReader(src, limit)
		}
		io.Copy(s, src)
		if limit >= 0 {
			s.r.Close()
		}
	}()
	return s
}

func (s *copierSinkT) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got.Write(p)
}

func (s *copierSinkT) received() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got.Len()
}

// waitFor waits until the sink has received n bytes. The bound only keeps
// a broken copier from hanging the test.
func (s *copierSinkT) waitFor(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); s.received() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("sink received %d bytes, waiting for %d", s.received(), n)
		}
	}
}

// finish closes the writer (the copier never does), waits for the reader
// and returns what it received.
func (s *copierSinkT) finish() []byte {
	s.w.Close()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.got.Bytes())
}

// checkSame fails t unless got is want, comparing SHA-256 digests.
func checkSame(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if len(got) != len(want) || sha256.Sum256(got) != sha256.Sum256(want) {
		at := 0
		for at < min(len(got), len(want)) && got[at] == want[at] {
			at++
		}
		t.Errorf("%s: received %d bytes, want %d; digests differ, first difference at byte %d", what, len(got), len(want), at)
	}
}

func writeAll(t *testing.T, w io.Writer, p []byte) {
	t.Helper()
	if _, err := w.Write(p); err != nil {
		t.Fatalf("writing the source: %v", err)
	}
}

// TestCopierAddMidStream: a writer added once the bytes before it have been
// consumed receives exactly the bytes written after Add, and the writers
// before it everything.
func TestCopierAddMidStream(t *testing.T) {
	fdtest.Check(t)
	data := copierData(2<<20 + 11)
	cases := []struct {
		name    string
		initial int   // writers given to NewCopier
		adds    []int // each adds a writer once the bytes before this offset are consumed
	}{
		{"before any byte", 1, []int{0}},
		{"after one byte", 1, []int{1}},
		{"after a chunk", 2, []int{32 << 10}},
		{"unaligned, twice", 1, []int{100_003, 1<<20 + 7}},
		{"no initial writer", 0, []int{0, 5000, 5001}},
		{"near the end", 1, []int{len(data) - 1}},
	}
	for _, fan := range copierFans {
		for _, tc := range cases {
			t.Run(fan.name+"/"+tc.name, func(t *testing.T) {
				src, in := ptNewPipe(t)
				var sinks []*copierSinkT
				var from []int // offset each sink starts at
				var ws []*PipeWriter
				for range tc.initial {
					s := newCopierSinkT(t, -1)
					sinks, from, ws = append(sinks, s), append(from, 0), append(ws, s.w)
				}
				c, err := fan.start(context.Background(), src, ws...)
				if err != nil {
					t.Fatal(err)
				}
				fed := 0
				for _, off := range tc.adds {
					writeAll(t, in, data[fed:off])
					fed = off
					for i, s := range sinks {
						s.waitFor(t, off-from[i])
					}
					s := newCopierSinkT(t, -1)
					if err := c.Add(s.w); err != nil {
						t.Fatal(err)
					}
					sinks, from = append(sinks, s), append(from, off)
					if n := c.Writers(); n != len(sinks) {
						t.Errorf("Writers() = %d after Add, want %d", n, len(sinks))
					}
				}
				writeAll(t, in, data[fed:])
				in.Close()
				if err := c.Wait(); err != nil {
					t.Fatalf("Wait: %v", err)
				}
				for i, s := range sinks {
					checkSame(t, fmt.Sprintf("writer %d (added at byte %d)", i, from[i]), s.finish(), data[from[i]:])
				}
			})
		}
	}
}

// TestCopierWritersLeave: writers whose readers close (EPIPE) leave, at the
// start, mid-chunk or after a MiB, and the others receive every byte.
func TestCopierWritersLeave(t *testing.T) {
	fdtest.Check(t)
	data := copierData(4<<20 + 5)
	const half = 2 << 20
	cases := []struct {
		name    string
		stay    int
		leavers []int64 // bytes each leaving reader reads before closing; all well under half
	}{
		{"one leaves before any byte", 1, []int64{0}},
		{"three leave at different points", 2, []int64{1, 64 << 10, 1 << 20}},
		{"two at once, one later", 1, []int64{0, 0, 300_001}},
		{"one among three", 3, []int64{777}},
	}
	for _, fan := range copierFans {
		for _, tc := range cases {
			t.Run(fan.name+"/"+tc.name, func(t *testing.T) {
				src, in := ptNewPipe(t)
				var stay, leave []*copierSinkT
				var ws []*PipeWriter
				for _, n := range tc.leavers {
					s := newCopierSinkT(t, n)
					leave, ws = append(leave, s), append(ws, s.w)
				}
				for range tc.stay {
					s := newCopierSinkT(t, -1)
					stay, ws = append(stay, s), append(ws, s.w)
				}
				c, err := fan.start(context.Background(), src, ws...)
				if err != nil {
					t.Fatal(err)
				}
				if n := c.Writers(); n != len(ws) {
					t.Errorf("Writers() = %d at the start, want %d", n, len(ws))
				}
				firstHalf := make(chan struct{})
				go func() {
					defer close(firstHalf)
					in.Write(data[:half])
				}()
				for _, s := range stay {
					s.waitFor(t, half)
				}
				// The copier runs at the pace of its slowest writer, and
				// each leaver could hold at most a few chunks beyond what
				// its reader took: by now every leaver has failed.
				if n := c.Writers(); n != tc.stay {
					t.Errorf("Writers() = %d once the leavers are gone, want %d", n, tc.stay)
				}
				<-firstHalf
				writeAll(t, in, data[half:])
				in.Close()
				if err := c.Wait(); err != nil {
					t.Fatalf("Wait: %v", err)
				}
				if n := c.Writers(); n != 0 {
					t.Errorf("Writers() = %d after the stop, want 0", n)
				}
				for i, s := range stay {
					checkSame(t, fmt.Sprintf("staying writer %d", i), s.finish(), data)
				}
				for i, s := range leave {
					checkSame(t, fmt.Sprintf("leaving writer %d", i), s.finish(), data[:tc.leavers[i]])
				}
			})
		}
	}
}

// TestCopierNoWriterReadsNothing: with no writer, from the start or once
// every writer has left, the copier reads nothing: bytes written then
// reach the next writer added.
func TestCopierNoWriterReadsNothing(t *testing.T) {
	fdtest.Check(t)
	early, late := copierData(10<<10), copierData(300<<10)
	for _, fan := range copierFans {
		for _, allLeft := range []bool{false, true} {
			name := fan.name + "/none yet"
			if allLeft {
				name = fan.name + "/all left"
			}
			t.Run(name, func(t *testing.T) {
				if allLeft && !fan.readsOnlyForWriters {
					t.Skip("a read(2) already waiting when the last writer leaves is not taken back")
				}
				c, _, in := startWriterless(t, fan.start, allLeft)
				if n := c.Writers(); n != 0 {
					t.Fatalf("Writers() = %d, want 0", n)
				}
				writeAll(t, in, early)
				time.Sleep(20 * time.Millisecond) // a copier that reads now would lose early
				s := newCopierSinkT(t, -1)
				if err := c.Add(s.w); err != nil {
					t.Fatal(err)
				}
				writeAll(t, in, late)
				in.Close()
				if err := c.Wait(); err != nil {
					t.Fatalf("Wait: %v", err)
				}
				checkSame(t, "writer added last", s.finish(), append(bytes.Clone(early), late...))
			})
		}
	}
}

// TestCopierAddAfterStop: once the copier has stopped, for any reason,
// Add fails with ErrCopierStopped, Writers is 0 and Wait keeps reporting
// the same error.
func TestCopierAddAfterStop(t *testing.T) {
	fdtest.Check(t)
	cases := []struct {
		name    string
		writers int
		stop    func(in *PipeWriter, src *PipeReader, cancel context.CancelFunc)
		wantErr func(ctx context.Context, err error) bool
	}{
		{"EOF", 2, func(in *PipeWriter, _ *PipeReader, _ context.CancelFunc) { in.Write([]byte("bye")); in.Close() },
			func(_ context.Context, err error) bool { return err == nil }},
		{"cancel", 1, func(_ *PipeWriter, _ *PipeReader, cancel context.CancelFunc) { cancel() },
			func(ctx context.Context, err error) bool { return errors.Is(err, ctx.Err()) }},
		{"cancel, no writer", 0, func(_ *PipeWriter, _ *PipeReader, cancel context.CancelFunc) { cancel() },
			func(ctx context.Context, err error) bool { return errors.Is(err, ctx.Err()) }},
		{"source closed", 1, func(_ *PipeWriter, src *PipeReader, _ context.CancelFunc) { src.Close() },
			func(ctx context.Context, err error) bool { return err != nil && ctx.Err() == nil }},
	}
	for _, fan := range copierFans {
		for _, tc := range cases {
			t.Run(fan.name+"/"+tc.name, func(t *testing.T) {
				src, in := ptNewPipe(t)
				var sinks []*copierSinkT
				var ws []*PipeWriter
				for range tc.writers {
					s := newCopierSinkT(t, -1)
					sinks, ws = append(sinks, s), append(ws, s.w)
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				c, err := fan.start(ctx, src, ws...)
				if err != nil {
					t.Fatal(err)
				}
				tc.stop(in, src, cancel)
				err = c.Wait()
				if !tc.wantErr(ctx, err) {
					t.Fatalf("Wait = %v", err)
				}
				if err2 := c.Wait(); err2 != err {
					t.Errorf("second Wait = %v, first %v", err2, err)
				}
				late := newCopierSinkT(t, -1)
				if err := c.Add(late.w); !errors.Is(err, ErrCopierStopped) {
					t.Errorf("Add after the stop = %v, want ErrCopierStopped", err)
				}
				if n := c.Writers(); n != 0 {
					t.Errorf("Writers() = %d after the stop", n)
				}
				for _, s := range append(sinks, late) {
					s.finish()
				}
			})
		}
	}
}

// TestCopierCancelWait: cancelling the context ends Wait with an error
// matching ctx.Err() whatever the copier waits on, and clears the
// deadlines it set to wake those waits.
func TestCopierCancelWait(t *testing.T) {
	fdtest.Check(t)
	cases := []struct {
		name   string
		ctx    func() (context.Context, func())
		state  string // "idle": waiting for input; "full": a writer nobody reads; "none": no writer
		writer bool
	}{
		{"cancel/idle", cancelSoon, "idle", true},
		{"cancel/full writer", cancelSoon, "full", true},
		{"cancel/no writer", cancelSoon, "none", false},
		{"deadline/idle", func() (context.Context, func()) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, "idle", true},
		{"cause/full writer", func() (context.Context, func()) {
			ctx, cancel := context.WithCancelCause(context.Background())
			time.AfterFunc(50*time.Millisecond, func() { cancel(errors.New("shutting down")) })
			return ctx, func() { cancel(nil) }
		}, "full", true},
	}
	for _, fan := range copierFans {
		for _, tc := range cases {
			t.Run(fan.name+"/"+tc.name, func(t *testing.T) {
				src, in := ptNewPipe(t)
				var ws []*PipeWriter
				var stuckR *PipeReader
				var stuckW *PipeWriter
				switch tc.state {
				case "idle":
					s := newCopierSinkT(t, -1)
					defer s.finish()
					ws = append(ws, s.w)
				case "full":
					stuckR, stuckW = ptNewPipe(t)
					ws = append(ws, stuckW)
				}
				ctx, cancel := tc.ctx()
				defer cancel()
				c, err := fan.start(ctx, src, ws...)
				if err != nil {
					t.Fatal(err)
				}
				fed := make(chan struct{})
				go func() {
					defer close(fed)
					if tc.state == "full" {
						in.Write(copierData(1 << 20)) // more than the writer's pipe holds; ends when src closes
					}
				}()
				err = c.Wait()
				if !errors.Is(err, ctx.Err()) {
					t.Fatalf("Wait = %v, want an error matching %v", err, ctx.Err())
				}
				if tc.state == "full" {
					// The write deadline set to wake the copier is cleared.
					drained := make(chan struct{})
					go func() {
						defer close(drained)
						io.Copy(io.Discard, struct{ io.Reader }{stuckR})
					}()
					if _, err := stuckW.Write([]byte("after")); err != nil {
						t.Errorf("writing to the writer after the cancel: %v", err)
					}
					stuckW.Close()
					<-drained
					src.Close() // ends the feeder's write
					<-fed
					return
				}
				<-fed
				// The read deadline set to wake the copier is cleared.
				writeAll(t, in, []byte("z"))
				b := make([]byte, 1)
				if _, err := src.Read(b); err != nil {
					t.Errorf("reading the source after the cancel: %v", err)
				}
			})
		}
	}
}

func cancelSoon() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	return ctx, cancel
}

// TestCopierBadInput: nil arguments fail without leaking what was set up.
func TestCopierBadInput(t *testing.T) {
	fdtest.Check(t)
	for _, fan := range copierFans {
		t.Run(fan.name, func(t *testing.T) {
			if fan.name == "NewCopier" {
				if _, err := NewCopier(context.Background(), nil); err == nil {
					t.Error("NewCopier with a nil reader succeeded")
				}
			}
			src, _ := ptNewPipe(t)
			_, w := ptNewPipe(t)
			if _, err := fan.start(context.Background(), src, w, nil); err == nil {
				t.Error("a nil writer was accepted")
			}
			c, err := fan.start(nil, src) // a nil context means Background
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Add(nil); err == nil || errors.Is(err, ErrCopierStopped) {
				t.Errorf("Add(nil) = %v", err)
			}
			src.Close()
			// No writer: the copier reads nothing, but sees its source
			// closed (TestAdv7CopierNoWriterSourceEnds).
			if err := c.Wait(); err == nil {
				t.Error("Wait = nil for a closed source")
			}
		})
	}
}

// TestCopierWriterTwice: a writer the copier already writes to is
// refused, at the start or by Add, with an error matching os.ErrInvalid;
// the writer receives the stream once. Accepted, it got two private
// pipes spliced into it, and the bytes of each chunk twice, in an order
// that depended on the scheduler.
func TestCopierWriterTwice(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(256 << 10)
	for _, fan := range copierFans {
		for _, how := range []string{"start", "Add"} {
			t.Run(fan.name+"/"+how, func(t *testing.T) {
				r, in := ptNewPipe(t)
				w := newCopierSinkT(t, -1)
				var c *Copier
				var err error
				if how == "start" {
					if _, err = fan.start(context.Background(), r, w.w, w.w); !errors.Is(err, os.ErrInvalid) {
						t.Errorf("start with one writer twice: %v; want os.ErrInvalid", err)
					}
					c, err = fan.start(context.Background(), r, w.w)
				} else {
					c, err = fan.start(context.Background(), r, w.w)
					if err == nil {
						if err := c.Add(w.w); !errors.Is(err, os.ErrInvalid) {
							t.Errorf("Add of a writer the copier has: %v; want os.ErrInvalid", err)
						}
						if n := c.Writers(); n != 1 {
							t.Errorf("Writers = %d; want 1", n)
						}
					}
				}
				if err != nil {
					t.Fatal(err)
				}
				if _, err := in.Write(data); err != nil {
					t.Fatal(err)
				}
				in.Close()
				if err := c.Wait(); err != nil {
					t.Fatal(err)
				}
				w.w.Close()
				if got := w.finish(); !bytes.Equal(got, data) {
					t.Errorf("the writer received %d bytes; want the %d written, once", len(got), len(data))
				}
			})
		}
	}
}

// TestFanOutDefaultBuffer holds the default of FanOutBuffer to its doc
// comment: 1 MiB per destination up to 31 destinations, halved beyond
// so that the private pipes and the staging pipe (half a private one)
// take at most 32 MiB, and never under 64 KiB, which passes 32 MiB from
// 512 destinations on. On 32-bit systems the product of the buffer and
// the destinations wrapped from 2047 destinations on, which kept 1 MiB
// per destination (GOARCH=386 shows it).
func TestFanOutDefaultBuffer(t *testing.T) {
	for _, tc := range []struct {
		dests, want int
		within      bool // the pipes take at most 32 MiB
	}{
		{1, 1 << 20, true},
		{31, 1 << 20, true},
		{32, 512 << 10, true},
		{63, 512 << 10, true},
		{64, 256 << 10, true},
		{511, 64 << 10, true},
		{512, 64 << 10, false},
		{2047, 64 << 10, false},
		{4096, 64 << 10, false}, // 1 MiB times 4097 wraps a 32-bit int
	} {
		var c fanOutConfig
		got := c.policy(tc.dests).Buffer
		if got != tc.want {
			t.Errorf("%d destinations: buffer %d, want %d", tc.dests, got, tc.want)
		}
		if spent := int64(tc.dests)*int64(got) + int64(got/2); (spent <= 32<<20) != tc.within {
			t.Errorf("%d destinations: %d bytes of pipes, within 32 MiB: %v, want %v", tc.dests, spent, spent <= 32<<20, tc.within)
		}
	}
	var c fanOutConfig
	FanOutBuffer(1<<31 - 1)(&c)
	if got := c.policy(1).Buffer; got != 1<<30 {
		t.Errorf("FanOutBuffer(2 GiB - 1): buffer %d, want 1 GiB", got)
	}
}
