//go:build linux && !pipes_portable

package pipes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// adv4APIs are the ways a test of this file runs one copy: each returns
// the copy's count and error.
var adv4APIs = []struct {
	name string
	run  func(ctx context.Context, e *Engine, dst io.Writer, src io.Reader) (int64, error)
}{
	{"Copy", func(_ context.Context, e *Engine, dst io.Writer, src io.Reader) (int64, error) {
		return e.Copy(dst, src)
	}},
	{"CopyAsync", func(ctx context.Context, e *Engine, dst io.Writer, src io.Reader) (int64, error) {
		return e.CopyAsync(ctx, dst, src).Wait()
	}},
	{"CopyContext", func(ctx context.Context, e *Engine, dst io.Writer, src io.Reader) (int64, error) {
		return e.CopyContext(ctx, dst, src)
	}},
	{"FanOut", func(ctx context.Context, e *Engine, dst io.Writer, src io.Reader) (int64, error) {
		r := e.FanOut(ctx, src, []io.Writer{dst})
		return r[0].Written, r[0].Err
	}},
}

// adv4Copy runs one copy with run in a goroutine and returns its result;
// ok is false if it still ran 20s later, after which unblock is called
// (it must end the copy) and the copy waited for.
func adv4Copy(run func() (int64, error), unblock func()) (n int64, err error, ok bool) {
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := run()
		done <- result{n, err}
	}()
	r, ok := recvBy(done, time.Now().Add(20*time.Second))
	if !ok {
		unblock()
		r = <-done
	}
	return r.n, r.err, ok
}

// writeOnlyPty opens a new pseudo-terminal and returns its slave opened
// write-only, in blocking mode (os.NewFile of the descriptor), and its
// master, both closed when the test ends.
func writeOnlyPty(t *testing.T) (slave, master *os.File) {
	t.Helper()
	master = openPath(t, "/dev/ptmx", os.O_RDWR|unix.O_NOCTTY)
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skip(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skip(err)
	}
	fd, err := unix.Open(fmt.Sprintf("/dev/pts/%d", n), unix.O_WRONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	return newFD(t, fd, err, "pts (write-only)"), master
}

// TestAdv4WriteOnlySource: a source open only for writing (the write
// end of a pipe in blocking mode, a terminal opened O_WRONLY) cannot be
// read: io.Copy fails at once with EBADF. A copy or fan-out from one
// waited for input that poll(2) never reports there (a blocking source
// is read only once poll says it has input), forever. It must fail as
// io.Copy does, having copied nothing.
func TestAdv4WriteOnlySource(t *testing.T) {
	fdtest.Check(t)
	sources := []struct {
		name string
		make func(t *testing.T) *os.File
	}{
		{"blocking-pipe-write-end", func(t *testing.T) *os.File {
			_, w := blockingPipe(t)
			return w
		}},
		{"pipe-write-end", func(t *testing.T) *os.File {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close(); w.Close() })
			return w
		}},
		{"pty-write-only", func(t *testing.T) *os.File {
			s, _ := writeOnlyPty(t)
			return s
		}},
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, src := range sources {
			for _, sk := range advSinks {
				for _, api := range adv4APIs {
					t.Run(fmt.Sprintf("%s/%s->%s/%s", ec.name, src.name, sk, api.name), func(t *testing.T) {
						ref := src.make(t)
						w, finish := advSink(t, sk)
						wantN, wantErr := io.Copy(w, ref)
						finish()
						if !errors.Is(wantErr, unix.EBADF) {
							t.Fatalf("io.Copy = (%d, %v), want EBADF", wantN, wantErr)
						}
						f := src.make(t)
						w, finish = advSink(t, sk)
						n, err, ok := adv4Copy(func() (int64, error) {
							return api.run(context.Background(), e, w, f)
						}, func() { f.Close() })
						got := finish()
						if !ok {
							t.Fatalf("%s still ran 20s later; once the source was closed: (%d, %v)", api.name, n, err)
						}
						if n != wantN || len(got) != 0 || !sameErr(err, wantErr) {
							t.Errorf("%s = (%d, %v), destination got %d bytes; io.Copy = (%d, %v)", api.name, n, err, len(got), wantN, wantErr)
						}
					})
				}
			}
		}
	}
}

// blockingMessagePair returns the two ends of a unix socketpair of type
// typ (SOCK_DGRAM, SOCK_SEQPACKET) in blocking mode, as *os.Files the
// netpoller does not watch, both closed when the test ends.
func blockingMessagePair(t *testing.T, typ int) (a, b *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a = os.NewFile(uintptr(fds[0]), "socketpair (blocking)")
	b = os.NewFile(uintptr(fds[1]), "socketpair (blocking, peer)")
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestAdv4BlockingMessageSocket: a datagram or seqpacket socket in
// blocking mode (os.NewFile of such a descriptor, as a socket handed
// over by a parent process may be) is copied through userspace, and its
// Read, when its peer is quiet, or its Write, when its peer does not
// read, waited in the kernel, where neither a cancel nor Engine.Close
// reached it: the copy never ended, nor did Close. Both must end the
// copy (and Close return) with an error wrapping context.Canceled or
// ErrClosed, the count being what the destination got.
func TestAdv4BlockingMessageSocket(t *testing.T) {
	fdtest.Check(t)
	hello := []byte("hello, datagram")
	types := map[string]int{"dgram": unix.SOCK_DGRAM, "seqpacket": unix.SOCK_SEQPACKET}
	for _, ec := range engineCases(t) {
		for tname, typ := range types {
			for _, role := range []string{"src", "dst"} {
				for _, how := range []string{"cancel", "Close"} {
					for _, api := range adv4APIs {
						if how == "cancel" && api.name == "Copy" {
							continue // only Close ends a Copy
						}
						t.Run(fmt.Sprintf("%s/%s-%s/%s/%s", ec.name, tname, role, how, api.name), func(t *testing.T) {
							e := newCaseEngine(t, ec)
							a, b := blockingMessagePair(t, typ)
							ctx, cancel := context.WithCancel(context.Background())
							defer cancel()
							var dst io.Writer
							var src io.Reader
							var peer io.ReadCloser
							if role == "src" {
								r, w := advConn(t, "pipe")
								defer r.Close()
								defer w.Close()
								if _, err := b.Write(hello); err != nil {
									t.Fatal(err)
								}
								dst, src, peer = w, a, r
							} else {
								dst, src = a, &io.LimitedReader{R: openPath(t, "/dev/zero", os.O_RDONLY), N: 64 << 20}
							}
							type result struct {
								n   int64
								err error
							}
							done := make(chan result, 1)
							go func() {
								n, err := api.run(ctx, e, dst, src)
								done <- result{n, err}
							}()
							if role == "src" {
								got := make([]byte, len(hello))
								if _, err := io.ReadFull(peer, got); err != nil {
									t.Fatal(err)
								}
							}
							closed, want := stopCopy(e, how, cancel)
							r, ok := recvBy(done, time.Now().Add(20*time.Second))
							if !ok {
								if role == "src" {
									b.Write(hello) // no EOF on a datagram socket
									a.Close()
								} else {
									go io.Copy(io.Discard, b)
								}
								r = <-done
								t.Fatalf("%s still ran 20s after the %s; once unblocked: (%d, %v)", api.name, how, r.n, r.err)
							}
							if closed != nil {
								if c := <-closed; c.err != nil {
									t.Errorf("Close: %v", c.err)
								}
							}
							var got int64
							if role == "src" {
								got = int64(len(hello))
							} else {
								a.Close()
								buf := make([]byte, 64<<10)
								for {
									m, _, err := unix.Recvfrom(int(b.Fd()), buf, unix.MSG_DONTWAIT)
									if err != nil || m <= 0 {
										break
									}
									got += int64(m)
								}
							}
							if !errors.Is(r.err, want) || r.n != got {
								t.Errorf("%s = (%d, %v), want (%d, an error wrapping %v)", api.name, r.n, r.err, got, want)
							}
						})
					}
				}
			}
		}
	}
}

// blockingEventFDs make anonymous-inode descriptors in blocking mode
// with nothing to read: a read(2) of each waits in the kernel for an
// event, and poll(2) reports input once there is one.
// post gives fd one event, so that a read waiting on it returns.
var blockingEventFDs = []struct {
	name string
	open func() (int, error)
	post func(t *testing.T, fd int)
}{
	{"eventfd", func() (int, error) { return unix.Eventfd(0, unix.EFD_CLOEXEC) }, func(t *testing.T, fd int) {
		unix.Write(fd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	}},
	{"timerfd", func() (int, error) { return unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC) }, func(t *testing.T, fd int) {
		unix.TimerfdSettime(fd, 0, &unix.ItimerSpec{Value: unix.NsecToTimespec(1e6)}, nil)
	}},
	{"inotify", func() (int, error) { return unix.InotifyInit1(unix.IN_CLOEXEC) }, func(t *testing.T, fd int) {
		dir := t.TempDir()
		unix.InotifyAddWatch(fd, dir, unix.IN_CREATE)
		os.WriteFile(dir+"/event", nil, 0o600)
	}},
}

// TestAdv4BlockingEventSource: an eventfd, timerfd or inotify
// descriptor in blocking mode (os.NewFile of one made without
// O_NONBLOCK) is copied through userspace, and its Read, with nothing
// to read, waited in the kernel, where neither a cancel nor
// Engine.Close reached it. Both must end the copy (and Close return)
// with an error wrapping context.Canceled or ErrClosed, nothing copied.
func TestAdv4BlockingEventSource(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		for _, kind := range blockingEventFDs {
			for _, how := range []string{"cancel", "Close"} {
				for _, api := range adv4APIs {
					if how == "cancel" && api.name == "Copy" {
						continue // only Close ends a Copy
					}
					t.Run(fmt.Sprintf("%s/%s/%s/%s", ec.name, kind.name, how, api.name), func(t *testing.T) {
						e := newCaseEngine(t, ec)
						fd, err := kind.open()
						src := newFD(t, fd, err, kind.name)
						r, w := advConn(t, "pipe")
						defer r.Close()
						defer w.Close()
						ctx, cancel := context.WithCancel(context.Background())
						defer cancel()
						want := error(context.Canceled)
						if how == "Close" {
							want = ErrClosed
						}
						stopped := make(chan (<-chan closeResult), 1)
						time.AfterFunc(20*time.Millisecond, func() { // once the read started
							closed, _ := stopCopy(e, how, cancel)
							stopped <- closed
						})
						n, err, ok := adv4Copy(func() (int64, error) {
							return api.run(ctx, e, w, src)
						}, func() { kind.post(t, fd) })
						if !ok {
							t.Fatalf("%s still ran 20s after the %s; once an event came: (%d, %v)", api.name, how, n, err)
						}
						if closed := <-stopped; closed != nil {
							if c := <-closed; c.err != nil {
								t.Errorf("Close: %v", c.err)
							}
						}
						if !errors.Is(err, want) || n != 0 {
							t.Errorf("%s = (%d, %v), want (0, an error wrapping %v)", api.name, n, err, want)
						}
					})
				}
			}
		}
	}
}

// TestAdv4BlockingAnonReadFails: other anonymous-inode descriptors in
// blocking mode fail a read at once (an epoll descriptor: EINVAL) where
// poll(2) would never report input; a copy from one must fail as
// io.Copy's does, not wait for input first.
func TestAdv4BlockingAnonReadFails(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		for _, api := range adv4APIs {
			t.Run(ec.name+"/epoll/"+api.name, func(t *testing.T) {
				e := newCaseEngine(t, ec)
				fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
				src := newFD(t, fd, err, "epoll")
				r, w := advConn(t, "pipe")
				defer r.Close()
				defer w.Close()
				_, want := io.Copy(io.Discard, src)
				n, err, ok := adv4Copy(func() (int64, error) {
					return api.run(context.Background(), e, w, src)
				}, func() { e.Close() })
				if !ok {
					t.Fatalf("%s still ran 20s on; io.Copy returned %v at once", api.name, want)
				}
				if n != 0 || err == nil || !errors.Is(err, syscall.EINVAL) {
					t.Errorf("%s = (%d, %v), want (0, an error wrapping EINVAL as io.Copy's %v)", api.name, n, err, want)
				}
			})
		}
	}
}
