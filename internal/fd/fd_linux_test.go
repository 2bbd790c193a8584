package fd

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestInspect(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	for _, c := range []struct {
		name  string
		f     *os.File
		need  Need
		kind  Kind
		flags bool
	}{
		{"pipe", r, Flags, KindPipe, true},
		{"file, flags", f, Flags, KindFile, true},
		{"file, flags if waits", f, FlagsIfWaits, KindFile, false},
		{"listening socket", lf, Stream | Flags, KindNone, false},
		{"listening socket, no stream check", lf, 0, KindSocket, false},
	} {
		rc, err := c.f.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		info, err := Inspect(rc, c.need)
		if err != nil || info.Kind != c.kind || (info.Flags != 0) != c.flags {
			t.Errorf("%s: Inspect = %+v, %v; want kind %v, flags read %v", c.name, info, err, c.kind, c.flags)
		}
	}
}

func TestInterrupt(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	stop := OnDone(ctx, nil, r)
	go func() {
		time.Sleep(10 * time.Millisecond)
		cancel()
	}()
	if _, err := r.Read(make([]byte, 1)); !os.IsTimeout(err) {
		t.Fatalf("Read = %v; want a deadline error", err)
	}
	stop()
	// The deadline is cleared: a read gets the byte written.
	w.Write([]byte{1})
	if n, err := r.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Fatalf("Read after stop = %d, %v", n, err)
	}
}

func TestRefused(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{unix.EINVAL, true},
		{unix.ENOSYS, true},
		{unix.EOPNOTSUPP, true},
		{os.NewSyscallError("splice", unix.EINVAL), true},
		{fmt.Errorf("x: %w", os.NewSyscallError("sendfile", unix.EOPNOTSUPP)), true},
		{unix.EPIPE, false},
		{nil, false},
	} {
		if got := Refused(c.err); got != c.want {
			t.Errorf("Refused(%v) = %v; want %v", c.err, got, c.want)
		}
	}
}
