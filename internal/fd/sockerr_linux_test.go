package fd

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tcpConnPair returns both ends of a loopback TCP connection.
func tcpConnPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// readEOF waits until a read of c answers EOF or an error.
func readEOF(t *testing.T, c net.Conn) error {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return err
}

// TestTCPAborted: a connection a reset closed counts as aborted, as does
// one closed cleanly after its own shutdown (which the caller rules
// out); one its peer half-closed, one never connected, a listener and a
// unix socket do not.
func TestTCPAborted(t *testing.T) {
	for _, c := range []struct {
		name string
		conn func(t *testing.T) syscall.Conn
		want bool
	}{
		{"established", func(t *testing.T) syscall.Conn { c, _ := tcpConnPair(t); return c }, false},
		{"peer-half-closed", func(t *testing.T) syscall.Conn {
			c, p := tcpConnPair(t)
			p.CloseWrite()
			if err := readEOF(t, c); err == nil {
				t.Fatal("read data, want EOF")
			}
			return c
		}, false},
		{"reset-reported", func(t *testing.T) syscall.Conn {
			c, p := tcpConnPair(t)
			p.SetLinger(0)
			p.Close()
			if err := readEOF(t, c); !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("read: %v, want ECONNRESET", err)
			}
			return c
		}, true},
		// Closed cleanly after its own shutdown: the state a reset
		// leaves, which only the caller can tell apart.
		{"shut-down-first-then-peer", func(t *testing.T) syscall.Conn {
			c, p := tcpConnPair(t)
			c.CloseWrite()
			p.CloseWrite()
			readEOF(t, c)
			readEOF(t, p)
			return c
		}, true},
		{"never-connected", func(t *testing.T) syscall.Conn {
			s, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			return fileConn(t, s)
		}, false},
		{"listener", func(t *testing.T) syscall.Conn {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			return ln.(*net.TCPListener)
		}, false},
		{"unix", func(t *testing.T) syscall.Conn {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			unix.Close(fds[1])
			return fileConn(t, fds[0])
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc, err := c.conn(t).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			if got := TCPAborted(rc); got != c.want {
				t.Errorf("TCPAborted = %v, want %v", got, c.want)
			}
		})
	}
}

// fileConn is the socket s as an *os.File, closed when the test ends.
func fileConn(t *testing.T, s int) *os.File {
	f := os.NewFile(uintptr(s), "socket")
	t.Cleanup(func() { f.Close() })
	return f
}
