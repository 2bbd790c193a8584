//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
	"github.com/pipes-go/pipes/internal/uring"
	"github.com/pipes-go/pipes/splice"
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

// TestAdvSharedFileMixedReaders reads one *os.File with several readers
// at once: a copy and an io.Copy into one socket, a copy into a pipe (on
// the io_uring engine, ring reads) and the file's own Read. Go's
// sendfile(2) (net's, under io.Copy) takes the file's read lock, then
// the socket's write lock, and holds both while it waits for room; a
// copy that took them the other way round (the socket's write lock,
// then the file's read lock for each call) deadlocked with it at once.
// Between them the readers must deliver every byte of the file once:
// the bytes of all destinations are the file's, each once.
func TestAdvSharedFileMixedReaders(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(4<<20 + 3)
	var want [256]int
	for _, b := range data {
		want[b]++
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, sk := range []string{"tcp", "unix"} {
			t.Run(ec.name+"/"+sk, func(t *testing.T) {
				for round := range 6 {
					f := fdtest.TempFile(t, data)
					if round%3 == 2 {
						fdtest.Evict(t, f)
					}
					r, w := advConn(t, sk)
					shared := make(chan []byte, 1)
					go func() {
						b, _ := io.ReadAll(r)
						shared <- b
					}()
					pw, finishPipe := advSink(t, "pipe")
					var read bytes.Buffer
					readers := []func() (int64, error){
						func() (int64, error) { return e.Copy(w, f) },
						func() (int64, error) { return io.Copy(w, f) },
						func() (int64, error) { return e.Copy(pw, f) },
						func() (int64, error) { // the file's Read, in odd sizes
							return io.CopyBuffer(onlyWriter{&read}, onlyReader{f}, make([]byte, 12345))
						},
					}
					ns := make([]int64, len(readers))
					var wg sync.WaitGroup
					for i, read := range readers {
						wg.Add(1)
						go func() {
							defer wg.Done()
							var err error
							if ns[i], err = read(); err != nil {
								t.Errorf("round %d, reader %d: (%d, %v)", round, i, ns[i], err)
							}
						}()
					}
					wg.Wait()
					w.Close()
					got := <-shared
					r.Close()
					piped := finishPipe()
					if int64(len(got)) != ns[0]+ns[1] || int64(len(piped)) != ns[2] || ns[0]+ns[1]+ns[2]+ns[3] != int64(len(data)) {
						t.Fatalf("round %d: readers took %v bytes of %d (destinations got %d and %d)", round, ns, len(data), len(got), len(piped))
					}
					var hist [256]int
					for _, b := range slices.Concat(got, piped, read.Bytes()) {
						hist[b]++
					}
					if hist != want {
						t.Fatalf("round %d: the readers got other bytes than the file's", round)
					}
				}
			})
		}
	}
}

// TestAdvSharedFileReadDuringCopy reads from an *os.File while a copy
// of it waits for a destination whose pipe is full, then ends the copy
// (its peer closes, or its context is cancelled). The read takes the
// bytes at the file's offset, past those the copy read; the copy, which
// holds some bytes it read and did not deliver, must not move the
// offset back over them, or the next read delivers the read's bytes
// again: the offset stays where the read left it, as io.Copy, which
// puts nothing back, leaves it.
func TestAdvSharedFileReadDuringCopy(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(4 << 20)
	const pipeSize = 4096
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, end := range []string{"peer-closed", "cancelled"} {
			t.Run(ec.name+"/"+end, func(t *testing.T) {
				f := fdtest.TempFile(t, data)
				pr, pw, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer pr.Close()
				defer pw.Close()
				if _, err := unix.FcntlInt(pw.Fd(), unix.F_SETPIPE_SZ, pipeSize); err != nil {
					t.Skip(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				fut := e.CopyAsync(ctx, pw, f)
				off := int64(0)
				for off < pipeSize && !isDone(fut) {
					runtime.Gosched()
					off, _ = f.Seek(0, io.SeekCurrent)
				}
				buf := make([]byte, 100)
				n, err := f.Read(buf)
				if err != nil || !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
					t.Fatalf("read at %d: (%d, %v), not the file's bytes there", off, n, err)
				}
				if end == "cancelled" {
					cancel()
				} else {
					pr.Close()
				}
				w, err := fut.Wait()
				if w > off || err == nil {
					t.Fatalf("copy = (%d, %v) after it read %d bytes into a full pipe", w, err, off)
				}
				if pos, _ := f.Seek(0, io.SeekCurrent); pos != off+int64(n) {
					t.Errorf("offset %d after the copy; the read left it at %d", pos, off+int64(n))
				}
			})
		}
	}
}

// TestAdvSharedFileUnreadAfterPeer: a ring-reads copy of a shared
// *os.File is cancelled with bytes it read still in its pipe, after
// another copy of the file has read past them. Moving the offset back
// then would hand the other copy bytes it had already delivered, and
// leave the cancelled copy's bytes to nobody: the other copy's output
// must stay one run of the file's bytes, to its end. Where the cancelled
// copy's source is an *io.LimitedReader, N must be lowered by every byte
// that copy took from the file, delivered or not, as io.Copy lowers it
// by every byte it read (the ring copy once reported only the offset
// that had moved, and N stayed higher).
func TestAdvSharedFileUnreadAfterPeer(t *testing.T) {
	for _, limited := range []bool{false, true} {
		t.Run(fmt.Sprintf("limited=%v", limited), func(t *testing.T) {
			fdtest.Check(t)
			e := ringReadsEngine(t)
			data := fdtest.Random(8 << 20)
			f := fdtest.TempFile(t, data)
			const limit = 1 << 40
			lr := &io.LimitedReader{R: f, N: limit}
			var src io.Reader = f
			if limited {
				src = lr
			}
			wa, _, finishA := gatedSink(t, "pipe", nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			first := e.CopyAsync(ctx, wa, src)
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
			if taken := int64(len(data) - len(got)); limited && limit-lr.N != taken {
				t.Errorf("the cancelled copy took %d bytes of the file, N lowered by %d", taken, limit-lr.N)
			}
		})
	}
}

// TestRingCopySourceClosedMidway: a ring copy whose caller closes the
// source file while the copy waits for its destination, and which is
// then cancelled, cannot put the bytes left in its pipe back into the
// file: they are lost, and the copy reports them (an UndeliveredError),
// as the splice loop does, and lowers an *io.LimitedReader's N by them:
// the file's offset, which a duplicate of the descriptor still shares,
// stays after them. Why they could not be put back matches os.ErrClosed
// (it read internal/poll's "use of closed file").
func TestRingCopySourceClosedMidway(t *testing.T) {
	fdtest.Check(t)
	e := ringReadsEngine(t)
	data := fdtest.Random(8 << 20)
	f := fdtest.TempFile(t, data)
	// A second descriptor of the same open file: its offset is the one
	// the copy moves, and it stays readable once f is closed.
	dupfd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dupfd)
	const limit = 1 << 40
	lr := &io.LimitedReader{R: f, N: limit}
	w, _, finish := gatedSink(t, "pipe", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fut := e.CopyAsync(ctx, w, lr)
	for fut.Written() == 0 && !isDone(fut) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond) // the copy waits for room in w
	f.Close()
	cancel()
	n, err := fut.Wait()
	got, _ := finish()
	off, serr := unix.Seek(dupfd, 0, io.SeekCurrent)
	if serr != nil {
		t.Fatal(serr)
	}
	var lost *splice.UndeliveredError
	if !errors.Is(err, context.Canceled) || n != got || !errors.As(err, &lost) {
		t.Fatalf("copy = (%d, %v), destination got %d bytes; want the cancel and the bytes not delivered", n, err, got)
	}
	if !errors.Is(err, os.ErrClosed) {
		t.Errorf("copy error %v; want it to say the source was closed (os.ErrClosed), as the file's own Read would", err)
	}
	if n+lost.N != off {
		t.Errorf("written %d + undelivered %d = %d; the copy moved the file's offset to %d", n, lost.N, n+lost.N, off)
	}
	if taken := limit - lr.N; taken != off {
		t.Errorf("LimitedReader.N lowered by %d; the copy took %d bytes of the file", taken, off)
	}
}

// ringReadsEngine returns an engine, closed at the end of the test, that
// sends every copy from a regular file through the ring's reads
// (RingMinConcurrency 0); it skips the test where the engine has no ring.
func ringReadsEngine(t *testing.T) *Engine {
	t.Helper()
	e := newTestEngine(t, WithRingMinConcurrency(0))
	if e.Backend() != BackendIOUring {
		t.Skip("no io_uring: no ring reads")
	}
	skipUnlessRingReadsTempDir(t)
	return e
}

// skipUnlessRingReadsTempDir skips t where files in its temporary
// directory are on a file system the ring does not read and that gets no
// Warmer (uring.MayRead: tmpfs, overlayfs, ...): copies of them never
// reach the ring.
func skipUnlessRingReadsTempDir(t testing.TB) {
	t.Helper()
	rc, err := fdtest.TempFile(t, nil).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if !uring.MayRead(rc) {
		t.Skip("the test's files are on a file system the ring does not read (tmpfs, overlayfs?)")
	}
}
