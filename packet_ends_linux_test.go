//go:build linux && !pipes_portable

package pipes

import (
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Copies from and into ends that keep message boundaries, UDP sockets
// and pipes in packet mode, each compared with io.Copy.

// udpPair returns a UDP socket connected to another, unconnected one, on
// the loopback: the first is the copy's end, the second its peer, which
// sends to it with WriteTo and reads what it sends. Both are closed when
// the test ends.
func udpPair(t *testing.T) (conn, peer *net.UDPConn) {
	t.Helper()
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	conn, err = net.DialUDP("udp", nil, peer.LocalAddr().(*net.UDPAddr))
	if err != nil {
		peer.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); peer.Close() })
	for _, c := range []*net.UDPConn{conn, peer} {
		// Room for every datagram a test sends (as root: past
		// net.core.rmem_max), so that none is dropped.
		rc, _ := c.SyscallConn()
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) })
	}
	return conn, peer
}

// TestAdv24UDP copies from a connected UDP socket (datagrams of 100,
// 40,000 and 7 bytes, read under an *io.LimitedReader of what io.Copy's
// reads of 32 KiB take of them: the middle one is cut) into every
// destination kind, and from files into a UDP socket (whose peer lists
// the datagrams it got): count, bytes, datagram sizes and error class
// must be io.Copy's.
func TestAdv24UDP(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(70000)
	udpSource := advEnd{"udp-limited", func(t *testing.T) any {
		a, peer := udpPair(t)
		for _, d := range [][]byte{data[:100], data[100:40100], data[40100:40107]} {
			if _, err := peer.WriteTo(d, a.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
		return &io.LimitedReader{R: a, N: 100 + 32<<10 + 7}
	}}
	udpSink := func(t *testing.T) (io.Writer, func() []byte) {
		a, peer := udpPair(t)
		return a, messagesOf(t, peer, syscall.SOCK_DGRAM)
	}
	srcs := []advEnd{
		{"file", func(t *testing.T) any { return fdtest.TempFile(t, data) }},
		{"file-limited", func(t *testing.T) any { return &io.LimitedReader{R: fdtest.TempFile(t, data), N: 40000} }},
		{"memfd-odd", func(t *testing.T) any {
			f := memfd(t, data, 0)
			f.Seek(4095, io.SeekStart)
			return f
		}},
	}
	for _, ec := range adv24Engines(t) {
		e := newTestEngine(t, ec.opts...)
		for _, sk := range advSinks {
			t.Run(fmt.Sprintf("%s/udp->%s", ec.name, sk), func(t *testing.T) {
				compareWithIOCopy(t, e, udpSource, func(t *testing.T) (io.Writer, func() []byte) { return advSink(t, sk) })
			})
		}
		for _, src := range srcs {
			t.Run(fmt.Sprintf("%s/%s->udp", ec.name, src.name), func(t *testing.T) {
				compareWithIOCopy(t, e, src, udpSink)
			})
		}
	}
}

// packetPipe returns the two ends of a pipe in packet mode (pipe2(2)
// with O_DIRECT: each write(2) of up to PIPE_BUF bytes is a packet, and
// a read(2) returns one packet at most), on the netpoller unless
// blocking. Both are closed when the test ends.
func packetPipe(t *testing.T, blocking bool) (r, w *os.File) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_DIRECT); err != nil {
		t.Skipf("pipe2(O_DIRECT): %v", err)
	}
	if !blocking {
		unix.SetNonblock(p[0], true)
		unix.SetNonblock(p[1], true)
	}
	r, w = os.NewFile(uintptr(p[0]), "packet-r"), os.NewFile(uintptr(p[1]), "packet-w")
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// TestAdv24PacketPipe copies from a pipe in packet mode (packets of 100,
// 4096, 7 and 70,000 bytes, the last cut by the kernel into packets of
// PIPE_BUF), whole and under an *io.LimitedReader that ends within a
// packet, into every destination kind but a pipe, and from a file and a
// pipe into such a pipe (read in reads of PIPE_BUF or more, which
// take a packet whole): count, bytes and error class must be io.Copy's.
//
// Not into a pipe: splice(2) between two pipes moves the source's
// buffers as they are, packets still, and a read of the destination
// shorter than a packet drops the rest of it (io.ReadAll's first reads
// of 512 bytes lose most of each one), where io.Copy writes a plain
// stream. Only the write end of a pipe says it is in packet mode
// (O_DIRECT): a copy from the read end cannot tell (docs/design.md).
func TestAdv24PacketPipe(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(100 + 4096 + 7 + 70000)
	packets := [][]byte{data[:100], data[100:4196], data[4196:4203], data[4203:]}
	source := func(blocking bool, limit int64) func(t *testing.T) any {
		return func(t *testing.T) any {
			r, w := packetPipe(t, blocking)
			fed := make(chan struct{})
			go func() {
				defer close(fed)
				for _, p := range packets {
					if _, err := w.Write(p); err != nil {
						break // the reader is gone: a copy under a limit
					}
				}
				w.Close()
			}()
			t.Cleanup(func() { r.Close(); <-fed })
			if limit >= 0 {
				return &io.LimitedReader{R: r, N: limit}
			}
			return r
		}
	}
	srcs := []advEnd{
		{"packets", source(false, -1)},
		{"packets-blocking", source(true, -1)},
		{"packets-limited", source(false, 4150)},
	}
	sink := func(t *testing.T) (io.Writer, func() []byte) {
		r, w := packetPipe(t, false)
		got := fdtest.ReadInPieces(r, 64<<10)
		return w, func() []byte {
			w.Close()
			return <-got
		}
	}
	for _, ec := range adv24Engines(t) {
		e := newTestEngine(t, ec.opts...)
		for _, src := range srcs {
			for _, sk := range advSinks {
				if sk == "pipe" {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s->%s", ec.name, src.name, sk), func(t *testing.T) {
					compareWithIOCopy(t, e, src, func(t *testing.T) (io.Writer, func() []byte) { return advSink(t, sk) })
				})
			}
		}
		for _, src := range []advEnd{
			{"file", func(t *testing.T) any { return fdtest.TempFile(t, data) }},
			// Not a socket: io.Copy would splice it into the pipe
			// through a pipe of Go's own cache, which outlives the test.
			{"pipe", func(t *testing.T) any { return fedPipe(t, data) }},
		} {
			t.Run(fmt.Sprintf("%s/%s->packet-pipe", ec.name, src.name), func(t *testing.T) {
				compareWithIOCopy(t, e, src, sink)
			})
		}
	}
}
