package fd

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// TestCopyableFiles asks CopyableFiles of every pair kind a copy between
// two *os.File can be, and checks that it moves neither offset.
func TestCopyableFiles(t *testing.T) {
	dir := t.TempDir()
	open := func(name string, flag int) *os.File {
		f, err := os.OpenFile(filepath.Join(dir, name), flag|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	src := open("src", os.O_RDWR)
	if _, err := src.WriteString("0123456789"); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Seek(3, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sock, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	dirFile, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer dirFile.Close()
	proc, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close()
	closed := open("closed", os.O_RDWR)
	closed.Close()
	for _, c := range []struct {
		name     string
		src, dst *os.File
		want     bool
	}{
		{"file -> file", src, open("dst", os.O_WRONLY), true},
		{"file -> itself", src, src, true},
		{"file -> file opened O_APPEND", src, open("append", os.O_WRONLY|os.O_APPEND), false},
		{"file -> file opened read-only", src, open("ro", os.O_RDONLY), false},
		{"write-only file -> file", open("wo", os.O_WRONLY), open("dst2", os.O_WRONLY), false},
		{"pipe -> file", r, open("dst3", os.O_WRONLY), false},
		{"file -> pipe", src, w, false},
		{"file -> socket", src, sock, false},
		{"directory -> file", dirFile, open("dst4", os.O_WRONLY), false},
		{"/proc file -> file", proc, open("dst5", os.O_WRONLY), false}, // procfs: another file system type
		{"closed file -> file", closed, open("dst6", os.O_WRONLY), false},
		{"file -> closed file", src, closed, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			sc, err := c.src.SyscallConn()
			if err != nil {
				sc = closedConn{}
			}
			dc, err := c.dst.SyscallConn()
			if err != nil {
				dc = closedConn{}
			}
			if got := CopyableFiles(sc, dc); got != c.want {
				t.Errorf("CopyableFiles = %v, want %v", got, c.want)
			}
			if off, err := src.Seek(0, io.SeekCurrent); err != nil || off != 3 {
				t.Errorf("the source offset is %d (%v), want 3", off, err)
			}
			if fi, err := c.dst.Stat(); err == nil && c.dst != src && fi.Mode().IsRegular() && fi.Size() != 0 {
				t.Errorf("the destination holds %d bytes, want none", fi.Size())
			}
		})
	}
}

// closedConn is the RawConn of a closed file: every call fails.
type closedConn struct{}

func (closedConn) Control(func(uintptr)) error    { return os.ErrClosed }
func (closedConn) Read(func(uintptr) bool) error  { return os.ErrClosed }
func (closedConn) Write(func(uintptr) bool) error { return os.ErrClosed }
