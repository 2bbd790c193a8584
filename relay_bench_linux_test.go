//go:build !pipes_portable

package pipes

import (
	"context"
	"io"
	"net"
	"testing"
)

// relayBenchEnds make the two ends of a relay, each with its peer.
var relayBenchEnds = []struct {
	name string
	pair func(testing.TB) (net.Conn, net.Conn)
}{
	{"tcp", func(t testing.TB) (net.Conn, net.Conn) { return tcpPair(t) }},
	{"unix", func(t testing.TB) (net.Conn, net.Conn) { return unixPair(t) }},
}

// BenchmarkRelaySameFile measures the check that refuses one socket as
// both ends of a relay, on two distinct sockets: told apart by their
// addresses (TCP), or by an fstat(2) of each (unix).
func BenchmarkRelaySameFile(b *testing.B) {
	for _, k := range relayBenchEnds {
		b.Run(k.name, func(b *testing.B) {
			a, pa := k.pair(b)
			c, pc := k.pair(b)
			defer closeAll(a, pa, c, pc)
			b.ReportAllocs()
			for b.Loop() {
				if _, same := sameFile(a, c); same {
					b.Fatal("two sockets found to be one")
				}
			}
		})
	}
}

// BenchmarkRelayMinimal measures the cheapest relay: both peers have
// half-closed before it starts, so each direction reads EOF at once and
// passes it on. New connections per relay, made and closed with the
// timer stopped. The ctx cases relay under a context that can end, as a
// server's is.
func BenchmarkRelayMinimal(b *testing.B) {
	e, err := NewEngine()
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	cancellable, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, k := range relayBenchEnds {
		for _, c := range []struct {
			name string
			ctx  context.Context
		}{{"", context.Background()}, {"/ctx", cancellable}} {
			benchRelayMinimal(b, e, k.name+c.name, c.ctx, k.pair)
		}
	}
}

func benchRelayMinimal(b *testing.B, e *Engine, name string, ctx context.Context, pair func(testing.TB) (net.Conn, net.Conn)) {
	b.Run(name, func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			b.StopTimer()
			a, pa := pair(b)
			c, pc := pair(b)
			pa.(closeWriter).CloseWrite()
			pc.(closeWriter).CloseWrite()
			b.StartTimer()
			if _, _, err := e.Relay(ctx, a, c); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			closeAll(a, pa, c, pc)
			b.StartTimer()
		}
	})
}

func closeAll(cs ...io.Closer) {
	for _, c := range cs {
		c.Close()
	}
}
