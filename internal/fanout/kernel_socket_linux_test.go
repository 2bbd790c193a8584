package fanout

import (
	"context"
	"crypto/sha256"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fd"
	"github.com/pipes-go/pipes/internal/fdtest"
)

// TestKernelInputAfterEmptySplice fans a socket source out while its
// peer writes between a splice that found it empty (EAGAIN) and the poll
// that checks that answer: the poll reports input, as at TCP's urgent
// mark. The fan-out must splice the input, not take it for the mark and
// read it through a buffer.
func TestKernelInputAfterEmptySplice(t *testing.T) {
	fdtest.Check(t)
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			var src, peer net.Conn
			if network == "unix" {
				src, peer = unixPair(t)
			} else {
				src, peer = tcpPair(t)
			}
			defer src.Close()
			defer peer.Close()
			msg := []byte("input that came after the splice")
			k := NewKernel(context.Background(), Source{Conn: rawConn(t, src.(syscall.Conn)), Kind: fd.KindSocket, Limit: -1}, Policy{})
			defer k.Close()
			hooked, readBytes := 0, 0
			k.afterEmptySplice = func(sysfd int) {
				if hooked++; hooked == 1 {
					if _, err := peer.Write(msg); err != nil {
						t.Error(err)
					}
					peer.(interface{ CloseWrite() error }).CloseWrite()
					fd.Poll(sysfd, unix.POLLIN, -1)
				}
			}
			k.readMark = func(n int) { readBytes += n }
			s := sinkKinds[0].make(t)
			d := NewDest(0, s.w)
			k.Add(d, s.out)
			if err := k.Open(); err != nil {
				t.Fatal(err)
			}
			var err error
			fdtest.Within(t, 10*time.Second, func() { _, err = k.Run() })
			s.closeW()
			if n, sum := s.got(); err != nil || d.Err() != nil || n != int64(len(msg)) || sum != sha256.Sum256(msg) {
				t.Fatalf("Run = %v, destination %v, %d bytes received; want nil, nil, %d", err, d.Err(), n, len(msg))
			}
			if hooked == 0 {
				t.Fatal("no splice from the source answered EAGAIN")
			}
			if readBytes != 0 {
				t.Errorf("%d bytes went through the buffer; want all spliced", readBytes)
			}
		})
	}
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	return a, b
}
