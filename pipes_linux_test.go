//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// The tests of the top-level contract (Copy, CopyAsync, CopyContext) on
// every kind of descriptor: files, pipes, fifos, TCP and unix sockets
// (kinds_linux_test.go), through the splice and io_uring paths. The
// contract on values with no descriptor is tested, on every operating
// system, in pipes_test.go.

var copySizes = []int{0, 1, 64<<10 - 1, 64<<10 + 1, 3<<20 + 17}

// TestCopyMatrix copies every size between every pair of fd kinds with
// Copy and CopyAsync and checks the bytes by hash.
func TestCopyMatrix(t *testing.T) {
	fdtest.Check(t)
	sizes := copySizes
	if testing.Short() {
		sizes = []int{0, 64<<10 + 1}
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, sk := range sourceKinds {
			for _, dk := range sinkKinds {
				for _, size := range sizes {
					for _, async := range []bool{false, true} {
						mode := "Copy"
						if async {
							mode = "CopyAsync"
						}
						name := fmt.Sprintf("%s/%s->%s/%d/%s", ec.name, sk.name, dk.name, size, mode)
						t.Run(name, func(t *testing.T) {
							data := fdtest.Random(size)
							src := sk.make(t, data)
							dst := dk.make(t)
							n, err := runCopy(e, async, dst.w, src.r)
							src.close()
							if err != nil {
								t.Fatalf("copy: %v", err)
							}
							if n != int64(size) {
								t.Fatalf("copied %d bytes, want %d", n, size)
							}
							got, sum := dst.finish()
							if got != int64(size) || sum != sha256.Sum256(data) {
								t.Fatalf("destination got %d bytes (hash match %v), want %d", got, sum == sha256.Sum256(data), size)
							}
						})
					}
				}
			}
		}
	}
}

// TestCopyLimitedReader checks that a *io.LimitedReader bounds the copy,
// has N decreased, and leaves the rest of the source unread.
func TestCopyLimitedReader(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, sk := range sourceKinds {
			for _, async := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/async=%v", ec.name, sk.name, async), func(t *testing.T) {
					data := fdtest.Random(300 << 10)
					src := sk.make(t, data)
					defer src.close()
					dst := sinkKinds[3].make(t) // tcp
					const limit = 200<<10 + 3
					lr := &io.LimitedReader{R: src.r, N: limit}
					n, err := runCopy(e, async, dst.w, lr)
					if err != nil || n != limit || lr.N != 0 {
						t.Fatalf("copy = (%d, %v), N = %d; want (%d, nil), N = 0", n, err, lr.N, limit)
					}
					got, sum := dst.finish()
					if got != limit || sum != sha256.Sum256(data[:limit]) {
						t.Fatalf("destination got %d bytes, want the first %d", got, limit)
					}
					rest, err := io.ReadAll(src.r)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(rest, data[limit:]) {
						t.Fatalf("the source's remaining %d bytes differ from the %d not copied", len(rest), len(data)-limit)
					}
				})
			}
		}
		// N <= 0 copies nothing.
		lr := &io.LimitedReader{R: strings.NewReader("x"), N: 0}
		if n, err := e.Copy(io.Discard, lr); n != 0 || err != nil {
			t.Fatalf("Copy with N=0 = (%d, %v)", n, err)
		}
	}
}

// TestCopyFileOffset checks that a file source is read from its current
// offset and left after the bytes copied, as io.Copy leaves it.
func TestCopyFileOffset(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, async := range []bool{false, true} {
			data := fdtest.Random(1<<20 + 5)
			src := fileSource(t, data)
			f := src.r.(*os.File)
			if _, err := f.Seek(1000, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			dst := sinkKinds[4].make(t) // unix
			n, err := runCopy(e, async, dst.w, &io.LimitedReader{R: f, N: 5000})
			if err != nil || n != 5000 {
				t.Fatalf("%s async=%v: copy = (%d, %v)", ec.name, async, n, err)
			}
			if off, _ := f.Seek(0, io.SeekCurrent); off != 6000 {
				t.Fatalf("%s async=%v: offset after copy = %d, want 6000", ec.name, async, off)
			}
			if _, sum := dst.finish(); sum != sha256.Sum256(data[1000:6000]) {
				t.Fatalf("%s async=%v: wrong bytes", ec.name, async)
			}
			src.close()
		}
	}
}

// TestCopyAsyncCancel cancels before the start, in the middle (source
// idle, and destination full), and after completion.
func TestCopyAsyncCancel(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)

		t.Run(ec.name+"/before", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			n, err := e.CopyAsync(ctx, io.Discard, strings.NewReader("abc")).Wait()
			if n != 0 || !errors.Is(err, context.Canceled) {
				t.Fatalf("Wait = (%d, %v), want (0, context.Canceled)", n, err)
			}
		})

		t.Run(ec.name+"/idle-source", func(t *testing.T) {
			a, b := tcpPair(t)
			defer a.Close()
			defer b.Close()
			c, d := unixPair(t)
			defer c.Close()
			defer d.Close()
			ctx, cancel := context.WithCancel(context.Background())
			f := e.CopyAsync(ctx, c, a)
			if _, err := b.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 5)
			if _, err := io.ReadFull(d, got); err != nil || string(got) != "hello" {
				t.Fatalf("destination read %q, %v", got, err)
			}
			start := time.Now()
			cancel()
			n, err := waitFuture(t, f)
			if n != 5 || !errors.Is(err, context.Canceled) {
				t.Fatalf("Wait = (%d, %v), want (5, context.Canceled)", n, err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("cancel took %v", d)
			}
			// The source is usable again: the deadline pipes set to
			// wake the copy is gone.
			if _, err := b.Write([]byte("again")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(a, got); err != nil || string(got) != "again" {
				t.Fatalf("reading the source after a cancelled copy: %q, %v", got, err)
			}
		})

		for _, kind := range []string{"unix", "tcp"} {
			t.Run(ec.name+"/full-destination/"+kind, func(t *testing.T) {
				data := fdtest.Random(8 << 20)
				src := fileSource(t, data)
				defer src.close()
				var a, b net.Conn // b is never read: a fills up
				if kind == "unix" {
					a, b = unixPair(t)
				} else {
					a, b = tcpPair(t)
				}
				defer a.Close()
				defer b.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				defer cancel()
				n, err := waitFuture(t, e.CopyAsync(ctx, a, src.r))
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Wait error = %v, want context.DeadlineExceeded", err)
				}
				checkDelivered(t, b, data, n, src.r.(*os.File))
				// The destination is usable again: the deadline pipes set to
				// wake the copy is gone.
				if _, err := a.Write([]byte{1}); err != nil {
					t.Fatalf("writing to the destination after a cancelled copy: %v", err)
				}
			})
		}

		t.Run(ec.name+"/cause", func(t *testing.T) {
			// A cause of the caller's own: the error matches both it
			// and ctx.Err(), on the ring and the splice paths alike.
			src := fileSource(t, fdtest.Random(8<<20))
			defer src.close()
			a, b := unixPair(t) // b is never read: a fills up
			defer a.Close()
			defer b.Close()
			cause := errors.New("client went away")
			ctx, cancel := context.WithCancelCause(context.Background())
			f := e.CopyAsync(ctx, a, src.r)
			time.Sleep(50 * time.Millisecond)
			cancel(cause)
			_, err := waitFuture(t, f)
			if !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
				t.Fatalf("Wait error = %v, want one matching context.Canceled and the cause", err)
			}
		})

		t.Run(ec.name+"/after", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			f := e.CopyAsync(ctx, io.Discard, strings.NewReader("abc"))
			n, err := f.Wait()
			cancel()
			if n2, err2 := f.Wait(); n != 3 || err != nil || n2 != 3 || err2 != nil {
				t.Fatalf("Wait = (%d, %v) then (%d, %v), want (3, nil)", n, err, n2, err2)
			}
		})
	}
}

// TestCopyCloseEnds closes the source or the destination from another
// goroutine while a copy waits on it: the copy ends with an error, as
// io.Copy does, and the peer of a closed destination sees EOF.
func TestCopyCloseEnds(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, async := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/source/async=%v", ec.name, async), func(t *testing.T) {
				a, b := tcpPair(t)
				defer b.Close()
				dst := sinkKinds[4].make(t)
				done := make(chan error, 1)
				go func() { _, err := runCopy(e, async, dst.w, a); done <- err }()
				time.Sleep(50 * time.Millisecond)
				a.Close()
				awaitClosed(t, done, "source")
				dst.finish()
			})
			t.Run(fmt.Sprintf("%s/destination/async=%v", ec.name, async), func(t *testing.T) {
				src := fileSource(t, fdtest.Random(16<<20))
				defer src.close()
				a, b := unixPair(t)
				defer b.Close()
				done := make(chan error, 1)
				go func() { _, err := runCopy(e, async, a, src.r); done <- err }()
				time.Sleep(50 * time.Millisecond)
				a.Close()
				awaitClosed(t, done, "destination")
				// The peer sees EOF after what was delivered.
				b.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.Copy(io.Discard, b); err != nil {
					t.Fatalf("peer after close: %v, want EOF", err)
				}
			})
		}
	}
}

// awaitClosed waits for a copy whose end (what) was closed to end, with
// an error wrapping net.ErrClosed.
func awaitClosed(t *testing.T, done <-chan error, what string) {
	t.Helper()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("copy error = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("closing the %s did not end the copy", what)
	}
}

// TestCopyPeerReset: a destination whose peer resets fails the copy with
// EPIPE or ECONNRESET.
func TestCopyPeerReset(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, async := range []bool{false, true} {
			src := fileSource(t, fdtest.Random(32<<20))
			a, b := tcpPair(t)
			b.SetLinger(0)
			go func() {
				buf := make([]byte, 64<<10)
				b.Read(buf)
				b.Close() // RST: unread data and linger 0
			}()
			_, err := runCopy(e, async, a, src.r)
			if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("%s async=%v: copy error = %v, want EPIPE or ECONNRESET", ec.name, async, err)
			}
			a.Close()
			src.close()
		}
	}
}

// TestCopyWriteDeadline: a write deadline the caller set on a socket
// whose peer stops reading ends the copy with os.ErrDeadlineExceeded, as
// it ends an io.Copy, with exactly the bytes reported delivered and the
// source offset right after them.
func TestCopyWriteDeadline(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, kind := range []string{"unix", "tcp"} {
			for _, async := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/async=%v", ec.name, kind, async), func(t *testing.T) {
					data := fdtest.Random(16 << 20)
					src := fileSource(t, data)
					defer src.close()
					var a, b net.Conn // b is not read until the copy ends
					if kind == "unix" {
						a, b = unixPair(t)
					} else {
						a, b = tcpPair(t)
					}
					defer a.Close()
					defer b.Close()
					a.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
					n, err := runCopy(e, async, a, src.r)
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						t.Fatalf("copy = (%d, %v), want os.ErrDeadlineExceeded", n, err)
					}
					checkDelivered(t, b, data, n, src.r.(*os.File))
				})
			}
		}
	}
}

// TestCopySlowReader: a destination read in small pieces with pauses
// still gets every byte, and the copy does not spin (it waits on the
// netpoller; see the CPU figures in docs/benchmarks.md).
func TestCopySlowReader(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		data := fdtest.Random(2 << 20)
		src := fileSource(t, data)
		a, b := unixPair(t)
		got := make(chan []byte)
		go func() {
			var all []byte
			buf := make([]byte, 64<<10)
			for {
				n, err := b.Read(buf)
				all = append(all, buf[:n]...)
				if err != nil {
					break
				}
				time.Sleep(time.Millisecond)
			}
			got <- all
		}()
		n, err := runCopy(e, true, a, src.r)
		a.Close()
		all := <-got
		b.Close()
		src.close()
		if err != nil || n != int64(len(data)) || !bytes.Equal(all, data) {
			t.Fatalf("%s: copy = (%d, %v), destination got %d bytes (equal %v)", ec.name, n, err, len(all), bytes.Equal(all, data))
		}
	}
}

// TestCopyFdReuse closes the source file of a copy in flight and opens
// another file, which gets the same descriptor number: the copy must not
// read the new file.
func TestCopyFdReuse(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		old := bytes.Repeat([]byte{'a'}, 16<<20)
		src := fileSource(t, old)
		f := src.r.(*os.File)
		fd := f.Fd()
		a, b := unixPair(t)
		ctx, cancel := context.WithCancel(context.Background())
		fut := e.CopyAsync(ctx, a, f)
		// Let the copy start and stall on the unread destination.
		buf := make([]byte, 4096)
		if _, err := io.ReadFull(b, buf); err != nil {
			t.Fatal(err)
		}
		f.Close()
		other := filepath.Join(t.TempDir(), "other")
		if err := os.WriteFile(other, bytes.Repeat([]byte{'b'}, 16<<20), 0o600); err != nil {
			t.Fatal(err)
		}
		reused, err := unix.Open(other, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if uintptr(reused) != fd {
			t.Logf("descriptor %d not reused (got %d); the check still runs", fd, reused)
		}
		done := make(chan []byte)
		go func() {
			all, _ := io.ReadAll(b)
			done <- all
		}()
		_, err = waitFuture(t, fut)
		cancel()
		a.Close()
		all := <-done
		b.Close()
		unix.Close(reused)
		if i := bytes.IndexByte(all, 'b'); i >= 0 {
			t.Fatalf("%s: the copy read the file that reused its descriptor (byte %d of %d)", ec.name, i, len(all))
		}
		if err == nil && len(all)+len(buf) != len(old) {
			t.Fatalf("%s: copy succeeded with %d of %d bytes", ec.name, len(all)+len(buf), len(old))
		}
	}
}

// TestEngineCloseInFlight closes an engine while copies wait on idle
// sources and full destinations: Close returns, each copy ends with an
// error wrapping ErrClosed, and later copies fail with ErrClosed.
func TestEngineCloseInFlight(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e, err := NewEngine(ec.opts...)
		if err != nil {
			t.Fatal(err)
		}
		var futures []*Future
		var closers []io.Closer
		for i := 0; i < 8; i++ {
			a, b := tcpPair(t) // idle source
			c, d := unixPair(t)
			closers = append(closers, a, b, c, d)
			futures = append(futures, e.CopyAsync(context.Background(), c, a))
			src := fileSource(t, fdtest.Random(8<<20))
			g, h := unixPair(t) // full destination
			closers = append(closers, g, h)
			futures = append(futures, e.CopyAsync(context.Background(), g, src.r))
			defer src.close()
		}
		syncDone := make(chan error, 1)
		sa, sb := tcpPair(t)
		closers = append(closers, sa, sb)
		go func() { _, err := e.Copy(io.Discard, sa); syncDone <- err }()
		time.Sleep(100 * time.Millisecond)
		if err := e.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		for i, f := range futures {
			if _, err := waitFuture(t, f); !errors.Is(err, ErrClosed) {
				t.Errorf("%s: copy %d ended with %v, want ErrClosed", ec.name, i, err)
			}
		}
		if err := <-syncDone; !errors.Is(err, ErrClosed) {
			t.Errorf("%s: Copy ended with %v, want ErrClosed", ec.name, err)
		}
		if _, err := e.Copy(io.Discard, strings.NewReader("x")); !errors.Is(err, ErrClosed) {
			t.Errorf("Copy after Close: %v, want ErrClosed", err)
		}
		if _, err := e.CopyAsync(context.Background(), io.Discard, strings.NewReader("x")).Wait(); !errors.Is(err, ErrClosed) {
			t.Errorf("CopyAsync after Close: %v, want ErrClosed", err)
		}
		if err := e.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		for _, c := range closers {
			c.Close()
		}
	}
}

// TestCopyFromFifoWaitsForWriter: a fifo opened read-only before any
// writer reads as EOF in the kernel; Copy waits for the first writer, as
// PipeReader.Read does, and CopyAsync's ctx still ends that wait.
func TestCopyFromFifoWaitsForWriter(t *testing.T) {
	fdtest.Check(t)
	e := newTestEngine(t)
	r, path := fifoNoWriter(t)
	done := make(chan struct{})
	var got bytes.Buffer
	var n int64
	var err error
	go func() {
		defer close(done)
		n, err = e.Copy(&got, r)
	}()
	time.Sleep(50 * time.Millisecond)
	w, err2 := os.OpenFile(path, os.O_WRONLY, 0)
	if err2 != nil {
		t.Fatal(err2)
	}
	w.Write([]byte("late writer"))
	w.Close()
	<-done
	if err != nil || n != 11 || got.String() != "late writer" {
		t.Fatalf("Copy = (%d, %v), got %q; want the late writer's bytes", n, err, got.String())
	}

	r2, _ := fifoNoWriter(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := waitFuture(t, e.CopyAsync(ctx, io.Discard, r2)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CopyAsync from a fifo with no writer: %v, want context.DeadlineExceeded", err)
	}
}

// appendOnlyFile hides *os.File's type so the engine cannot hand the pair
// to io.Copy up front.
type appendOnlyFile struct{ *os.File }

// TestCopyAppendDestination: splice refuses an O_APPEND destination; the
// copy falls back to userspace with nothing lost, on every engine path.
func TestCopyAppendDestination(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, async := range []bool{false, true} {
			data := fdtest.Random(3<<20 + 5)
			src := fileSource(t, data)
			path := filepath.Join(t.TempDir(), "log")
			if err := os.WriteFile(path, []byte("head:"), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			n, err := runCopy(e, async, appendOnlyFile{f}, src.r)
			f.Close()
			src.close()
			if err != nil || n != int64(len(data)) {
				t.Fatalf("%s async=%v: copy = (%d, %v), want %d bytes", ec.name, async, n, err, len(data))
			}
			got, _ := os.ReadFile(path)
			if !bytes.Equal(got, append([]byte("head:"), data...)) {
				t.Fatalf("%s async=%v: the file holds %d bytes, want head: + %d", ec.name, async, len(got), len(data))
			}
		}
	}
}

// checkDelivered checks that the peer b of a copy's destination holds
// exactly the first n bytes of data, the n bytes the copy reported, and
// that the source file's offset sits right after them.
func checkDelivered(t *testing.T, b net.Conn, data []byte, n int64, src *os.File) {
	t.Helper()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, n)
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatalf("reading the %d bytes reported: %v", n, err)
	}
	if !bytes.Equal(got, data[:n]) {
		t.Fatal("the bytes reported differ from the source's")
	}
	if off, _ := src.Seek(0, io.SeekCurrent); off != n {
		t.Errorf("source offset %d after a copy of %d bytes", off, n)
	}
}

// fifoNoWriter creates a fifo and opens it read-only, before any writer.
func fifoNoWriter(t *testing.T) (*PipeReader, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fifo")
	r, _, err := OpenFifo(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, path
}

// TestCopyPerCopyAllocs checks what one synchronous Copy allocates on
// each kernel path: the RawConn Go makes for each side's SyscallConn
// (2); where the source is classified by fstat, the callback that runs
// it (2 more); where the ring may take a file copy, its page-cache probe
// (2 more). Byte meters, copiers, their callbacks and the engine's
// interruption records are recycled.
func TestCopyPerCopyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates, and drops recycled values at random")
	}
	msg := fdtest.Random(4 << 10)
	file, err := os.Create(filepath.Join(t.TempDir(), "src"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if _, err := file.Write(msg); err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	usrc, ufeed := unixPair(t)
	defer usrc.Close()
	defer ufeed.Close()
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, c := range []struct {
			name           string
			src            io.Reader
			feed           func() error // before each copy: msg ready at src
			most, ringMost int          // allocations; ringMost: the engine that rings every file copy
		}{
			{"file-unix (sendfile)", file, func() error { _, err := file.Seek(0, io.SeekStart); return err }, 2, 6},
			{"pipe-unix (direct)", pr, func() error { _, err := pw.Write(msg); return err }, 4, 4},
			{"unix-unix (through a pipe)", usrc, func() error { _, err := ufeed.Write(msg); return err }, 2, 2},
		} {
			t.Run(ec.name+"/"+c.name, func(t *testing.T) {
				dst, sink := unixPair(t)
				defer dst.Close()
				defer sink.Close()
				got := make([]byte, len(msg))
				src := &io.LimitedReader{R: c.src}
				allocs := testing.AllocsPerRun(200, func() {
					if err := c.feed(); err != nil {
						t.Fatal(err)
					}
					src.N = int64(len(msg))
					if n, err := e.Copy(dst, src); err != nil || n != int64(len(msg)) {
						t.Fatalf("Copy = (%d, %v), want %d bytes", n, err, len(msg))
					}
					if _, err := io.ReadFull(sink, got); err != nil {
						t.Fatal(err)
					}
				})
				if !bytes.Equal(got, msg) {
					t.Fatal("the bytes differ")
				}
				most := c.most
				if ec.name != "default" {
					most = c.ringMost
				}
				if allocs > float64(most) {
					t.Errorf("%v allocations per Copy, want at most %d", allocs, most)
				}
			})
		}
	}
}

// TestCopySteadyStateAllocs checks that a long-lived socket -> socket
// copy allocates nothing per message once it runs (the fill and drain
// callbacks are made once per copy, and pipes go back to the pool
// without allocating), and holds no pooled pipe while it waits for input.
func TestCopySteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, ec := range engineCases(t) {
		t.Run(ec.name, func(t *testing.T) {
			e := newTestEngine(t, ec.opts...)
			for _, pair := range []struct {
				name string
				mk   func(testing.TB) (net.Conn, net.Conn)
			}{
				{"tcp", func(tb testing.TB) (net.Conn, net.Conn) { a, b := tcpPair(tb); return a, b }},
				{"unix", func(tb testing.TB) (net.Conn, net.Conn) { a, b := unixPair(tb); return a, b }},
			} {
				t.Run(pair.name, func(t *testing.T) {
					src, feed := pair.mk(t)
					dst, sink := pair.mk(t)
					defer sink.Close()
					f := e.CopyAsync(context.Background(), dst, src)
					msg := fdtest.Random(4 << 10)
					got := make([]byte, len(msg))
					allocs := testing.AllocsPerRun(500, func() {
						if _, err := feed.Write(msg); err != nil {
							t.Fatal(err)
						}
						if _, err := io.ReadFull(sink, got); err != nil {
							t.Fatal(err)
						}
					})
					// The copy is idle now: it holds no pipe.
					if inUse := e.sys.pool.Stats().InUse; inUse != 0 {
						t.Errorf("an idle copy holds %d pooled pipes, want 0", inUse)
					}
					feed.Close()
					if n, err := waitFuture(t, f); err != nil || n != 501*int64(len(msg)) {
						t.Fatalf("copy = (%d, %v)", n, err)
					}
					dst.Close()
					src.Close()
					if allocs > 0 {
						t.Errorf("%v allocations per 4 KiB message, want 0", allocs)
					}
				})
			}
		})
	}
}

// readCalls returns the read system calls this process has made
// (/proc/self/io syscr: copy_file_range(2) counts one a call).
func readCalls(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no task I/O accounting: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			var n int64
			if _, err := fmt.Sscan(v, &n); err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no syscr in /proc/self/io")
	return 0
}

// TestCopyFileToFileInKernel: a copy between two *os.File regular files
// goes through copy_file_range(2) as io.Copy's does, however it is
// started, a limit included: a few calls, where a userspace copy of
// 8 MiB makes 256 reads of 32 KiB. (CopyAsync and CopyContext once hid
// the source behind their cancellation wrapper, which cost io.Copy its
// copy_file_range.)
func TestCopyFileToFileInKernel(t *testing.T) {
	const size = 8 << 20
	data := fdtest.Random(size)
	srcPath := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(srcPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	e := newTestEngine(t)
	for _, tc := range []struct {
		name  string
		limit int64 // -1: none
		run   func(dst io.Writer, src io.Reader) (int64, error)
	}{
		{"Copy", -1, e.Copy},
		{"CopyAsync", -1, func(dst io.Writer, src io.Reader) (int64, error) {
			return e.CopyAsync(context.Background(), dst, src).Wait()
		}},
		{"CopyContext", -1, func(dst io.Writer, src io.Reader) (int64, error) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			return e.CopyContext(ctx, dst, src)
		}},
		{"CopyAsync/limit", size - 100, func(dst io.Writer, src io.Reader) (int64, error) {
			return e.CopyAsync(context.Background(), dst, src).Wait()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := openFileCopy(t, srcPath)
			var r io.Reader = src
			want := data
			var lr *io.LimitedReader
			if tc.limit >= 0 {
				lr = &io.LimitedReader{R: src, N: tc.limit}
				r, want = lr, data[:tc.limit]
			}
			before := readCalls(t)
			n, err := tc.run(dst, r)
			calls := readCalls(t) - before
			if err != nil || n != int64(len(want)) {
				t.Fatalf("copy = (%d, %v), want (%d, nil)", n, err, len(want))
			}
			if lr != nil && lr.N != 0 {
				t.Errorf("LimitedReader.N = %d after the copy, want 0", lr.N)
			}
			got, err := os.ReadFile(dst.Name())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("the destination differs from the source")
			}
			if calls > 32 {
				t.Errorf("%d read system calls for %d bytes: not copied with copy_file_range(2)", calls, n)
			}
		})
	}
}

// errAfterRounds is a context that ends once it has been asked for its
// Err rounds times: a cancel that lands between copyFiles' rounds.
type errAfterRounds struct {
	context.Context
	rounds int
}

func (c *errAfterRounds) Err() error {
	if c.rounds--; c.rounds < 0 {
		return context.Canceled
	}
	return nil
}

// TestCopyFilesRounds: a copy between two files stops at the end of the
// round in which its context ended, with an error wrapping
// context.Canceled and the bytes of the rounds done; left alone, it
// copies everything.
func TestCopyFilesRounds(t *testing.T) {
	const size = fileChunk + 4096 // two rounds
	dir := t.TempDir()
	srcPath := filepath.Join(dir, "src")
	if err := os.WriteFile(srcPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(srcPath, size); err != nil { // sparse: cheap to copy
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		rounds int
		want   int64
	}{
		{"cancelled after one round", 1, fileChunk},
		{"not cancelled", 1 << 30, size},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := openFileCopy(t, srcPath)
			ctx := &errAfterRounds{Context: context.Background(), rounds: tc.rounds}
			var m meter
			n, err := copyFiles(ctx, dst, copySource{r: src, limit: -1}, &m)
			if n != tc.want || m.n.Load() != n {
				t.Errorf("copied %d bytes (metered %d), want %d", n, m.n.Load(), tc.want)
			}
			if cancelled := tc.want < size; cancelled != errors.Is(err, context.Canceled) || (!cancelled && err != nil) {
				t.Errorf("copyFiles: %v, cancelled: %v", err, cancelled)
			}
		})
	}
}

// openFileCopy opens srcPath for reading and a new empty file in a
// temporary directory for writing: the ends of a file -> file copy,
// closed at the end of the test.
func openFileCopy(t *testing.T, srcPath string) (src, dst *os.File) {
	t.Helper()
	src, err := os.Open(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	dst, err = os.Create(filepath.Join(t.TempDir(), "dst"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dst.Close() })
	return src, dst
}

// TestContextAllocs checks what a copy or relay on a context of its own
// (a tie) allocates per call, on TCP ends: a Relay (its two directions'
// RawConns, the tie, its context, the relay's goroutine) and a
// CopyContext under a context that can end. The bounds leave a few
// allocations of room to the Go release's context package; a relay
// allocated 37 times before ties (docs/benchmarks.md, "Per-copy cost of
// a context").
func TestContextAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates, and drops recycled values at random")
	}
	e := newTestEngine(t)
	cancellable, cancel := context.WithCancel(context.Background())
	defer cancel()
	relay := func(ctx context.Context) func(a, b *net.TCPConn) error {
		return func(a, b *net.TCPConn) error { _, _, err := e.Relay(ctx, a, b); return err }
	}
	copyContext := func(a, b *net.TCPConn) error {
		n, err := e.CopyContext(cancellable, b, a)
		if err == nil && n != 1 {
			err = fmt.Errorf("copied %d bytes, want 1", n)
		}
		return err
	}
	const runs = 50
	for _, c := range []struct {
		name string
		most int
		run  func(a, b *net.TCPConn) error
	}{
		{"Relay", 18, relay(context.Background())},
		{"Relay/ctx", 21, relay(cancellable)},
		{"CopyContext/ctx", 12, copyContext},
	} {
		t.Run(c.name, func(t *testing.T) {
			// a's peer sent a byte and half-closed, b's half-closed:
			// each call ends at EOF at once.
			var ends [runs + 1][2]*net.TCPConn
			for i := range ends {
				a, pa := tcpPair(t)
				b, pb := tcpPair(t)
				closeAtEnd(t, a, pa, b, pb)
				pa.Write([]byte{1})
				pa.CloseWrite()
				pb.CloseWrite()
				ends[i] = [2]*net.TCPConn{a, b}
			}
			i := 0
			var err error
			allocs := testing.AllocsPerRun(runs, func() {
				if e := c.run(ends[i][0], ends[i][1]); e != nil && err == nil {
					err = e
				}
				i++
			})
			if err != nil {
				t.Fatal(err)
			}
			if allocs > float64(c.most) {
				t.Errorf("%v allocations per call, want at most %d", allocs, c.most)
			}
		})
	}
}
