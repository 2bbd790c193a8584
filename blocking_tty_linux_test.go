//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// newCaseEngine returns a new engine of ec's options, closed when t
// ends (a test may close it before).
func newCaseEngine(t *testing.T, ec engineCase) *Engine {
	t.Helper()
	e, err := NewEngine(ec.opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// blockingPty opens a pseudo-terminal in raw mode and returns its master
// as an *os.File in blocking mode (as f.Fd() or term.MakeRaw on the
// master leave it: the netpoller does not watch it, and it has no
// deadlines) and its slave, both closed when the test ends.
func blockingPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("open /dev/ptmx: %v", err)
	}
	master = os.NewFile(uintptr(mfd), "ptmx (blocking)")
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		t.Skip(err)
	}
	n, err := unix.IoctlGetInt(mfd, unix.TIOCGPTN)
	if err != nil {
		t.Skip(err)
	}
	slave = openPath(t, fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY)
	sfd, err := unix.Open(fmt.Sprintf("/dev/pts/%d", n), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skip(err)
	}
	defer unix.Close(sfd)
	tio, err := unix.IoctlGetTermios(sfd, unix.TCGETS)
	if err != nil {
		t.Skip(err)
	}
	cfmakeraw(tio)
	if err := unix.IoctlSetTermios(sfd, unix.TCSETS, tio); err != nil {
		t.Skip(err)
	}
	if fl, err := unix.FcntlInt(uintptr(mfd), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK != 0 {
		t.Fatalf("ptmx flags %#x, %v: want blocking mode", fl, err)
	}
	return master, slave
}

// TestAdv2BlockingDeviceSource: a character device in blocking mode (a
// pty master, as term.MakeRaw(int(f.Fd())) leaves it) blocks splice(2) in
// the kernel until it has input, whatever SPLICE_F_NONBLOCK says, where
// neither a cancel nor Engine.Close reaches it. A copy reading one whose
// other side is idle, after a first few bytes, must end once cancelled or
// closed (Close must return), with an error wrapping context.Canceled or
// ErrClosed, having reported exactly the bytes its destination got.
func TestAdv2BlockingDeviceSource(t *testing.T) {
	fdtest.Check(t)
	hello := []byte("hello, tty")
	for _, ec := range engineCases(t) {
		// "writer": a destination without a descriptor, so that the copy
		// reads the terminal through userspace.
		for _, sink := range []string{"pipe", "tcp", "unix", "writer"} {
			for _, how := range []string{"cancel", "Close"} {
				t.Run(fmt.Sprintf("%s/pty->%s/%s", ec.name, sink, how), func(t *testing.T) {
					e := newCaseEngine(t, ec)
					master, slave := blockingPty(t)
					kind := sink
					if sink == "writer" {
						kind = "pipe"
					}
					r, w := advConn(t, kind)
					defer r.Close()
					defer w.Close()
					var dst io.Writer = w
					if sink == "writer" {
						dst = struct{ io.Writer }{w}
					}
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					run := startCopy(e, ctx, true, dst, master)
					if _, err := slave.Write(hello); err != nil {
						t.Fatal(err)
					}
					readHello(t, r, slave, hello)
					closed, want := stopCopy(e, how, cancel)
					if _, ok := recvBy(run.done, time.Now().Add(20*time.Second)); !ok {
						slave.Close() // the master then reads EIO: the copy ends
						<-run.done
						t.Fatalf("the copy still ran 20s after the %s; once unblocked: (%d, %v)", how, run.n, run.err)
					}
					if closed != nil {
						if res := <-closed; res.err != nil {
							t.Errorf("Close: %v", res.err)
						}
					}
					if !errors.Is(run.err, want) || run.n != int64(len(hello)) {
						t.Errorf("copy = (%d, %v), want (%d, an error wrapping %v)", run.n, run.err, len(hello), want)
					}
				})
			}
		}
	}
}

// readHello reads hello, which the slave of a blocking pty wrote, from r,
// the peer of a copy's destination. A read still blocked 20s later (on
// the lock of a pipe a splice from the pty holds) fails the test, after
// the slave is closed to end that splice (the master then reads EIO).
func readHello(t *testing.T, r io.Reader, slave *os.File, hello []byte) {
	t.Helper()
	got := make([]byte, len(hello))
	read := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(r, got)
		read <- err
	}()
	err, ok := recvBy(read, time.Now().Add(20*time.Second))
	if !ok {
		slave.Close()
		err = <-read
		t.Fatalf("the destination's peer could not read the first bytes for 20s (then: %q, %v)", got, err)
	}
	if err != nil || string(got) != string(hello) {
		t.Fatalf("the destination's peer read %q, %v; want %q", got, err, hello)
	}
}

// TestAdv2BlockingDeviceRelay: a relay between a blocking pty master and
// a TCP connection ends on RelayIdleTimeout once the terminal is idle,
// having delivered what the terminal wrote.
func TestAdv2BlockingDeviceRelay(t *testing.T) {
	fdtest.Check(t)
	hello := []byte("hello, tty")
	for _, ec := range engineCases(t) {
		t.Run(ec.name, func(t *testing.T) {
			e := newTestEngine(t, ec.opts...)
			master, slave := blockingPty(t)
			b, pb := tcpPair(t)
			defer b.Close()
			defer pb.Close()
			res := startRelay(e, context.Background(), master, b, RelayIdleTimeout(100*time.Millisecond))
			if _, err := slave.Write(hello); err != nil {
				t.Fatal(err)
			}
			readHello(t, pb, slave, hello)
			r, ok := recvBy(res, time.Now().Add(20*time.Second))
			if !ok {
				slave.Close() // the master then reads EIO: the relay ends
				r = <-res
				t.Fatalf("the relay still ran 20s after its idle timeout; once unblocked: (%d, %d, %v)", r.aToB, r.bToA, r.err)
			}
			if !errors.Is(r.err, os.ErrDeadlineExceeded) || r.aToB != int64(len(hello)) || r.bToA != 0 {
				t.Errorf("Relay = (%d, %d, %v), want (%d, 0, os.ErrDeadlineExceeded)", r.aToB, r.bToA, r.err, len(hello))
			}
		})
	}
}

// TestAdv2BlockingTTYDest: a terminal in blocking mode as a destination
// whose other side reads nothing. A write to it blocks in the kernel
// until all of it fits (as io.Copy's write(2) does); a splice from a pipe
// into it would hold the pipe's lock meanwhile, so that the pipe's own
// writer blocked in the kernel too, though the pipe had room. The copy
// goes through userspace instead: the source's writer is not held up,
// and once the terminal is read every byte arrives.
func TestAdv2BlockingTTYDest(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(52 << 10)
	// More than the terminal takes (some 12 KiB), with room left in
	// the pipe once the copy has read what it writes.
	first := 48 << 10
	for _, ec := range engineCases(t) {
		t.Run(ec.name, func(t *testing.T) {
			e := newCaseEngine(t, ec)
			master, slave := blockingPty(t)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()
			run := startCopy(e, context.Background(), false, master, r)
			wrote := make(chan error, 2)
			go func() {
				_, err := w.Write(data[:first])
				wrote <- err
			}()
			time.Sleep(300 * time.Millisecond) // the copy blocks writing the terminal
			go func() {
				_, err := w.Write(data[first:])
				wrote <- err
			}()
			for range 2 {
				err, ok := recvBy(wrote, time.Now().Add(20*time.Second))
				if !ok {
					go io.Copy(io.Discard, slave)
					t.Fatal("the source pipe's writer was held up by the copy into the terminal")
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			w.Close()
			got := make([]byte, len(data))
			if _, err := io.ReadFull(slave, got); err != nil {
				t.Fatal(err)
			}
			if _, ok := recvBy(run.done, time.Now().Add(20*time.Second)); !ok {
				t.Fatal("the copy did not end after EOF")
			}
			if run.n != int64(len(data)) || run.err != nil || !bytes.Equal(got, data) {
				t.Fatalf("copy = (%d, %v), bytes equal %v; want (%d, nil), equal", run.n, run.err, bytes.Equal(got, data), len(data))
			}
		})
	}
}
