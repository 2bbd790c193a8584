//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/pipes-go/pipes/internal/fd"
	"github.com/pipes-go/pipes/internal/fdtest"
)

func TestEndpointClassification(t *testing.T) {
	fdtest.Check(t)
	r, w := ptNewPipe(t)
	f, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	dir, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	ac, _ := ln.Accept()
	defer ac.Close()
	sock := filepath.Join(t.TempDir(), "s")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	uc, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uac, _ := ul.Accept()
	defer uac.Close()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	gram, err := net.ListenPacket("unixgram", filepath.Join(t.TempDir(), "g"))
	if err != nil {
		t.Fatal(err)
	}
	defer gram.Close()

	for _, c := range []struct {
		name string
		v    any
		ok   bool
		kind fdKind
		wake bool
	}{
		{"PipeReader", r, true, kindPipe, true},
		{"PipeWriter", w, true, kindPipe, true},
		{"regular file", f, true, kindFile, true},
		{"/dev/null", null, true, kindOther, true},
		{"directory", dir, false, 0, false},
		{"TCP", tc, true, kindSocket, true},
		{"unix stream", uc, true, kindSocket, true},
		{"UDP", udp, false, 0, false},
		{"unixgram", gram, false, 0, false},
		{"bytes.Buffer", new(bytes.Buffer), false, 0, false},
		{"nil *os.File", (*os.File)(nil), false, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if rd, ok := c.v.(io.Reader); ok {
				e, ok := readerEndpoint(rd)
				wake := !fd.Of(nil, rd).None() // a deadline wakes its waits
				if ok != c.ok || (ok && (e.kind != c.kind || wake != c.wake)) {
					t.Errorf("readerEndpoint = %v kind %v wake %v; want %v %v", ok, e.kind, wake, c.ok, c.kind)
				}
			}
			if wr, ok := c.v.(io.Writer); ok {
				e, ok := writerEndpoint(wr)
				if ok != c.ok || (ok && e.kind != c.kind) {
					t.Errorf("writerEndpoint = %v kind %v; want %v %v", ok, e.kind, c.ok, c.kind)
				}
				if ok && e.Pipe != (c.kind == kindPipe) {
					t.Errorf("End.Pipe = %v", e.Pipe)
				}
			}
		})
	}
}
