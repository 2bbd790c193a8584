//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// readEOFWriter is one end of a relay: it reads as EOF at once and
// writes through w.
type readEOFWriter struct{ io.Writer }

func (readEOFWriter) Read([]byte) (int, error) { return 0, io.EOF }

// readOnlyEnd is the other end: it yields r and drops what it is given.
type readOnlyEnd struct{ io.Reader }

func (readOnlyEnd) Write(p []byte) (int, error) { return len(p), nil }

// TestUserspaceInvalidWriteCountNotMetered: a destination whose Write
// returns a count below 0 or above what it was given fails as io.Copy
// fails with it ("invalid write result", that Write counting none), and
// the engine's Stats.Bytes and a relay's RelayProgress count what the
// copy returns: none of that Write. Before, the userspace copy's meter
// took the count as it came, so Stats.Bytes grew by more bytes than the
// source had (or, for a negative count, wrapped to near 2^64) and
// RelayProgress went above the relay's own count or below zero.
func TestUserspaceInvalidWriteCountNotMetered(t *testing.T) {
	data := strings.Repeat("0123456789", 5000)
	for _, extra := range []int{1, 1 << 20, -len(data) - 1, -(1 << 20)} {
		_, ioErr := io.Copy(badCountWriter{extra}, struct{ io.Reader }{strings.NewReader(data)})
		t.Run(fmt.Sprintf("Copy/%+d", extra), func(t *testing.T) {
			e := newTestEngine(t)
			before := e.Stats().Bytes
			n, err := e.Copy(badCountWriter{extra}, struct{ io.Reader }{strings.NewReader(data)})
			if n != 0 || err == nil || err.Error() != ioErr.Error() {
				t.Errorf("Copy = %d, %v; want 0, %v (io.Copy's)", n, err, ioErr)
			}
			if got := e.Stats().Bytes - before; got != uint64(n) {
				t.Errorf("Stats.Bytes grew by %d; want %d, what Copy returned", got, n)
			}
		})
		t.Run(fmt.Sprintf("RelayProgress/%+d", extra), func(t *testing.T) {
			e := newTestEngine(t)
			var aToB, bToA atomic.Int64
			a := readEOFWriter{badCountWriter{extra}}
			b := readOnlyEnd{struct{ io.Reader }{bytes.NewReader([]byte(data))}}
			x, y, err := e.RelayWith(context.Background(), a, b, RelayProgress(&aToB, &bToA))
			if err == nil {
				t.Errorf("Relay = %d, %d, nil; want io.Copy's error (%v)", x, y, ioErr)
			}
			if aToB.Load() != x || bToA.Load() != y || y != 0 {
				t.Errorf("Relay = %d, %d, %v; RelayProgress %d, %d; want bToA 0 and progress equal to the result", x, y, err, aToB.Load(), bToA.Load())
			}
		})
	}
}

// upperConn is a caller's type that gives its file's descriptor
// (syscall.Conn) and writes the bytes it is given in upper case.
type upperConn struct{ f *os.File }

func (c upperConn) Write(p []byte) (int, error) { return c.f.Write(bytes.ToUpper(p)) }

func (c upperConn) SyscallConn() (syscall.RawConn, error) { return c.f.SyscallConn() }

// TestBlockingDestWrapperWriteCalled: a destination that gives the
// descriptor of a pipe or socket in blocking mode but has a Write of its
// own, copied to from a source without a descriptor (a userspace copy),
// receives the bytes through that Write, as io.Copy's does. Before, the
// userspace copy and FanOut wrote to the descriptor directly (the
// wrapper that makes a blocking write interruptible), so the peer read
// the bytes as they came, not as the destination's Write makes them.
func TestBlockingDestWrapperWriteCalled(t *testing.T) {
	data := strings.Repeat("hello, world ", 2000)
	want := strings.ToUpper(data)
	ends := map[string]func(t *testing.T) (w, r *os.File){
		"pipe": func(t *testing.T) (*os.File, *os.File) {
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			return os.NewFile(uintptr(p[1]), "w"), os.NewFile(uintptr(p[0]), "r")
		},
		"unix stream": func(t *testing.T) (*os.File, *os.File) {
			p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			return os.NewFile(uintptr(p[0]), "w"), os.NewFile(uintptr(p[1]), "r")
		},
	}
	copies := map[string]func(dst io.Writer, src io.Reader) (int64, error){
		"Copy": Copy,
		"CopyContext": func(dst io.Writer, src io.Reader) (int64, error) {
			return CopyContext(context.Background(), dst, src)
		},
		"FanOut": func(dst io.Writer, src io.Reader) (int64, error) {
			r := FanOut(context.Background(), src, []io.Writer{dst})
			return r[0].Written, r[0].Err
		},
	}
	for end, mk := range ends {
		for name, copyFn := range copies {
			t.Run(end+"/"+name, func(t *testing.T) {
				w, r := mk(t)
				defer r.Close()
				got := make(chan string, 1)
				go func() {
					b, _ := io.ReadAll(r)
					got <- string(b)
				}()
				n, err := copyFn(upperConn{w}, struct{ io.Reader }{strings.NewReader(data)})
				w.Close()
				if s := <-got; n != int64(len(data)) || err != nil || s != want {
					t.Errorf("%s = %d, %v; peer read %.20q... (%d bytes); want %d, nil and %.20q... as io.Copy", name, n, err, s, len(s), len(data), want)
				}
			})
		}
	}
}
