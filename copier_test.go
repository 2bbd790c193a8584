//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

type copierSink struct {
	r   *PipeReader
	w   *PipeWriter
	buf lockedBuffer
	wg  sync.WaitGroup
}

func newCopierSink(t *testing.T) *copierSink {
	s := &copierSink{}
	s.r, s.w = ptNewPipe(t)
	s.wg.Add(1)
	go func() { defer s.wg.Done(); io.Copy(&s.buf, struct{ io.Reader }{s.r}) }()
	return s
}

func (s *copierSink) finish() string {
	s.w.Close()
	s.wg.Wait()
	return s.buf.String()
}

// TestCopierFanOutLarge: several MiB reach every writer byte for byte.
func TestCopierFanOutLarge(t *testing.T) {
	fdtest.Check(t)
	src, in := ptNewPipe(t)
	sinks := []*copierSink{newCopierSink(t), newCopierSink(t), newCopierSink(t)}
	c, err := NewCopier(context.Background(), src, sinks[0].w, sinks[1].w, sinks[2].w)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 5<<20+3)
	for i := range data {
		data[i] = byte(i * 7)
	}
	go func() { in.Write(data); in.Close() }()
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	for i, s := range sinks {
		if got := s.finish(); !bytes.Equal([]byte(got), data) {
			t.Errorf("sink %d got %d bytes, want %d", i, len(got), len(data))
		}
	}
}

// TestCopierEvicts: writers whose readers went away are evicted, including
// the last one, and the others keep receiving.
func TestCopierEvicts(t *testing.T) {
	fdtest.Check(t)
	src, in := ptNewPipe(t)
	good := newCopierSink(t)
	badFirstR, badFirst := ptNewPipe(t)
	badR, badLast := ptNewPipe(t)
	c, err := NewCopier(context.Background(), src, badFirst, good.w)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Add(badLast); err != nil {
		t.Fatal(err)
	}
	// Close the read ends of the bad writers: EPIPE.
	badFirstR.Close()
	badR.Close()
	in.Write([]byte("one"))
	seedCheckBuffer(t, &good.buf, "one")
	// Each writer fails in its own goroutine, not in the order of delivery.
	for deadline := time.Now().Add(5 * time.Second); c.Writers() != 1 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := c.Writers(); n != 1 {
		t.Errorf("writers after two failed: %d, want 1", n)
	}
	in.Write([]byte(" two"))
	seedCheckBuffer(t, &good.buf, "one two")
	in.Close()
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(good.w); !errors.Is(err, ErrCopierStopped) {
		t.Errorf("Add after EOF: %v", err)
	}
	good.finish()
}

// TestCopierCancel: cancelling the context stops a copier waiting on an
// idle source and on a full writer.
func TestCopierCancel(t *testing.T) {
	fdtest.Check(t)
	t.Run("idle source", func(t *testing.T) {
		src, _ := ptNewPipe(t)
		s := newCopierSink(t)
		ctx, cancel := context.WithCancel(context.Background())
		c, err := NewCopier(ctx, src, s.w)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		cancel()
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Wait = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("copier did not stop")
		}
		s.finish()
	})
	t.Run("full writer", func(t *testing.T) {
		src, in := ptNewPipe(t)
		_, stuck := ptNewPipe(t) // nobody reads it
		ctx, cancel := context.WithCancel(context.Background())
		c, err := NewCopier(ctx, src, stuck)
		if err != nil {
			t.Fatal(err)
		}
		go in.Write(make([]byte, 4<<20))
		time.Sleep(50 * time.Millisecond)
		cancel()
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Wait = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("copier did not stop")
		}
		in.Close()
		src.Close()
	})
}

// TestAdv20bCopierAddRacesEnd adds a writer while the source's last
// bytes are written and its write end is closed: Add must either fail
// with ErrCopierStopped, the writer receiving nothing, or succeed, the
// writer receiving a tail of the stream (the chunks read after it was
// admitted), never bytes out of order or twice; Wait must report EOF and
// the first writer every byte.
func TestAdv20bCopierAddRacesEnd(t *testing.T) {
	fdtest.Check(t)
	data := copierData(100<<10 + 3)
	for _, fan := range copierFans {
		t.Run(fan.name, func(t *testing.T) {
			for i := range 40 {
				src, in := ptNewPipe(t)
				first, late := newCopierSinkT(t, -1), newCopierSinkT(t, -1)
				c, err := fan.start(context.Background(), src, first.w)
				if err != nil {
					t.Fatal(err)
				}
				fed := make(chan struct{})
				go func() {
					defer close(fed)
					in.Write(data)
					in.Close()
				}()
				if i%2 == 1 {
					<-fed // Add as the copier meets EOF
				}
				addErr := c.Add(late.w)
				<-fed
				if err := c.Wait(); err != nil {
					t.Fatalf("Wait: %v", err)
				}
				checkSame(t, "first writer", first.finish(), data)
				got := late.finish()
				if addErr != nil && (!errors.Is(addErr, ErrCopierStopped) || len(got) > 0) || !bytes.HasSuffix(data, got) {
					t.Fatalf("Add = %v; the late writer got %d bytes (a tail: %v)", addErr, len(got), bytes.HasSuffix(data, got))
				}
			}
		})
	}
}

// TestAdv20bCopierWriterClosedMidRun closes one writer (the *PipeWriter
// the copier writes to, not its reader) mid-stream: the copier must drop
// it and go on, the others receiving every byte, the closed one a prefix.
func TestAdv20bCopierWriterClosedMidRun(t *testing.T) {
	fdtest.Check(t)
	data := copierData(3<<20 + 1)
	for _, fan := range copierFans {
		t.Run(fan.name, func(t *testing.T) {
			src, in := ptNewPipe(t)
			sinks := []*copierSinkT{newCopierSinkT(t, -1), newCopierSinkT(t, -1), newCopierSinkT(t, -1)}
			c, err := fan.start(context.Background(), src, sinks[0].w, sinks[1].w, sinks[2].w)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				in.Write(data)
				in.Close()
			}()
			sinks[1].waitFor(t, 100<<10)
			sinks[1].w.Close()
			if err := c.Wait(); err != nil {
				t.Fatalf("Wait: %v", err)
			}
			checkSame(t, "writer 0", sinks[0].finish(), data)
			checkSame(t, "writer 2", sinks[2].finish(), data)
			if got := sinks[1].finish(); !bytes.HasPrefix(data, got) || len(got) == len(data) {
				t.Errorf("closed writer: got %d bytes (a prefix: %v)", len(got), bytes.HasPrefix(data, got))
			}
		})
	}
}

// TestAdv20bCopierFifos runs a Copier from a read-only fifo that has no
// writer yet into a fifo and a pipe: the writer that opens the source
// later is waited for, and every byte reaches both.
func TestAdv20bCopierFifos(t *testing.T) {
	fdtest.Check(t)
	data := copierData(1<<20 + 5)
	dir := t.TempDir()
	srcPath, sinkPath := filepath.Join(dir, "src"), filepath.Join(dir, "sink")
	if err := syscall.Mkfifo(srcPath, 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := Open(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	fr, fw, err := Create(sinkPath)
	if err != nil {
		t.Fatal(err)
	}
	defer fr.Close()
	defer fw.Close()
	viaFifo := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(fr)
		viaFifo <- b
	}()
	pipe := newCopierSinkT(t, -1)
	c, err := NewCopier(context.Background(), src, pipe.w, fw)
	if err != nil {
		t.Fatal(err)
	}
	_, w, err := OpenFifo(srcPath, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, data)
	w.Close()
	if err := c.Wait(); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	checkSame(t, "pipe writer", pipe.finish(), data)
	fw.Close()
	checkSame(t, "fifo writer", <-viaFifo, data)
}

// adv28Within reports whether got is data[off:off+len(got)] for some
// off, found from its first bytes (data is random), and off.
func adv28Within(data, got []byte) (int, bool) {
	if len(got) == 0 {
		return 0, true
	}
	probe := got[:min(len(got), 64)]
	for off := 0; off+len(got) <= len(data); {
		i := bytes.Index(data[off:], probe)
		if i < 0 {
			return -1, false
		}
		off += i
		if bytes.Equal(data[off:off+len(got)], got) {
			return off, true
		}
		off++
	}
	return -1, false
}

// TestAdv28CopierChurn: writers join and leave (their readers close
// after a random count) while the source is written in random pieces
// and closed: each writer must receive one contiguous stretch of the
// stream, those that never left a whole tail, and Wait nil.
func TestAdv28CopierChurn(t *testing.T) {
	fdtest.Check(t)
	data := copierData(1<<20 + 77)
	for _, fan := range copierFans {
		t.Run(fan.name, func(t *testing.T) {
			for iter := range 8 {
				rng := rand.New(rand.NewPCG(uint64(iter), 28))
				src, in := ptNewPipe(t)
				c, err := fan.start(context.Background(), src)
				if err != nil {
					t.Fatal(err)
				}
				type wr struct {
					s     *copierSinkT
					limit int64
					err   error
				}
				var ws []*wr
				var mu sync.Mutex
				fed := make(chan struct{})
				go func() {
					defer close(fed)
					for p := data; len(p) > 0; {
						n := min(len(p), 1+rng.IntN(200<<10))
						in.Write(p[:n])
						p = p[n:]
					}
					in.Close()
				}()
				for k := range 12 {
					limit := int64(-1)
					if k%3 == 1 {
						limit = int64(k * 37000)
					}
					s := newCopierSinkT(t, limit)
					err := c.Add(s.w)
					mu.Lock()
					ws = append(ws, &wr{s, limit, err})
					mu.Unlock()
					if k%4 == 0 {
						time.Sleep(time.Millisecond)
					}
				}
				<-fed
				if err := c.Wait(); err != nil {
					t.Fatalf("Wait: %v", err)
				}
				for i, w := range ws {
					got := w.s.finish()
					off, ok := adv28Within(data, got)
					switch {
					case w.err != nil && (!errors.Is(w.err, ErrCopierStopped) || len(got) > 0):
						t.Errorf("iter %d writer %d: Add = %v, got %d bytes", iter, i, w.err, len(got))
					case !ok:
						t.Errorf("iter %d writer %d (limit %d): %d bytes not a stretch of the stream", iter, i, w.limit, len(got))
					case w.err == nil && w.limit < 0 && off+len(got) != len(data) && len(got) > 0:
						t.Errorf("iter %d writer %d: got [%d, %d) of %d", iter, i, off, off+len(got), len(data))
					case w.limit >= 0 && int64(len(got)) > w.limit:
						t.Errorf("iter %d writer %d: got %d past limit %d", iter, i, len(got), w.limit)
					}
				}
			}
		})
	}
}

// TestAdv28CopierStopWhileJoining stops a Copier (its source's write end
// closed, its reader closed, or its context cancelled) while writers are
// being added: Wait must report the stop (nil, os.ErrClosed,
// context.Canceled), the first writers a prefix of the stream (all of it
// at EOF), every other writer one stretch of it, and Add afterwards
// ErrCopierStopped.
func TestAdv28CopierStopWhileJoining(t *testing.T) {
	fdtest.Check(t)
	data := copierData(1<<20 + 333)
	for _, fan := range copierFans {
		for _, how := range []string{"eof", "close-reader", "cancel"} {
			t.Run(fan.name+"/"+how, func(t *testing.T) {
				for iter := range 4 {
					ctx, cancel := context.WithCancel(context.Background())
					src, in := ptNewPipe(t)
					first := []*copierSinkT{newCopierSinkT(t, -1), newCopierSinkT(t, -1)}
					c, err := fan.start(ctx, src, first[0].w, first[1].w)
					if err != nil {
						t.Fatal(err)
					}
					cut := len(data) * (iter + 1) / 6
					fed := make(chan struct{})
					go func() {
						defer close(fed)
						in.Write(data[:cut])
						first[0].waitFor(t, cut/2)
						switch how {
						case "eof":
							in.Write(data[cut:])
							in.Close()
						case "close-reader":
							src.Close()
						case "cancel":
							cancel()
						}
					}()
					var late []*copierSinkT
					var lateErr []error
					for k := 0; k < 12; k++ {
						s := newCopierSinkT(t, -1)
						late, lateErr = append(late, s), append(lateErr, c.Add(s.w))
						if k%5 == 0 {
							runtime.Gosched()
						}
					}
					<-fed
					werr := c.Wait()
					switch how {
					case "eof":
						if werr != nil {
							t.Errorf("iter %d: Wait = %v, want nil", iter, werr)
						}
					case "close-reader":
						if !errors.Is(werr, os.ErrClosed) {
							t.Errorf("iter %d: Wait = %v, want os.ErrClosed", iter, werr)
						}
					case "cancel":
						if !errors.Is(werr, context.Canceled) {
							t.Errorf("iter %d: Wait = %v, want context.Canceled", iter, werr)
						}
					}
					extra := newCopierSinkT(t, -1)
					if err := c.Add(extra.w); !errors.Is(err, ErrCopierStopped) {
						t.Errorf("iter %d: Add after Wait = %v", iter, err)
					}
					extra.finish()
					if n := c.Writers(); n != 0 {
						t.Errorf("iter %d: Writers after Wait = %d", iter, n)
					}
					in.Close()
					// The stop came once writer 0 had cut/2 bytes; writer
					// 1, not waited for, may have had fewer.
					for i, s := range first {
						got := s.finish()
						if how == "eof" {
							checkSame(t, fmt.Sprintf("iter %d first writer %d", iter, i), got, data)
						} else if !bytes.HasPrefix(data, got) || (i == 0 && len(got) < cut/2) || len(got) > cut {
							t.Errorf("iter %d first writer %d: %d bytes (a prefix: %v), cut at %d", iter, i, len(got), bytes.HasPrefix(data, got), cut)
						}
					}
					for i, s := range late {
						got := s.finish()
						off, ok := adv28Within(data, got)
						switch {
						case lateErr[i] != nil && (!errors.Is(lateErr[i], ErrCopierStopped) || len(got) > 0):
							t.Errorf("iter %d late writer %d: Add = %v, got %d bytes", iter, i, lateErr[i], len(got))
						case !ok:
							t.Errorf("iter %d late writer %d: %d bytes not a stretch of the stream", iter, i, len(got))
						case how == "eof" && len(got) > 0 && off+len(got) != len(data):
							t.Errorf("iter %d late writer %d: got [%d, %d) of %d", iter, i, off, off+len(got), len(data))
						}
					}
					cancel()
				}
			})
		}
	}
}
