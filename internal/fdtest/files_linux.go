package fdtest

import (
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// SocketPair returns the two ends of a connected unix socketpair of type
// typ (syscall.SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET) as *net.UnixConn
// on Go's netpoller.
func SocketPair(t testing.TB, typ int) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, typ|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// TempFile writes data to a new file in t's temporary directory and
// returns it open for reading; it is closed when the test ends.
func TempFile(t testing.TB, data []byte) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
