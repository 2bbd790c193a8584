//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
	"github.com/pipes-go/pipes/splice"
)

// reportedLost returns the bytes err says were read and not delivered
// (splice.UndeliveredError).
func reportedLost(err error) int {
	var u *splice.UndeliveredError
	if errors.As(err, &u) {
		return int(u.N)
	}
	return 0
}

// closeRaceCase is one kind of sync Copy the engine's Close races.
type closeRaceCase struct {
	name string
	// pair returns the copy's src and dst, the writer feeding src (the
	// test closes it once all is written) and the reader of dst.
	pair func(t *testing.T) (src io.Reader, dst io.Writer, feed io.WriteCloser, peer io.Reader, closeAll func())
}

func closeRaceCases() []closeRaceCase {
	return []closeRaceCase{
		{"tcp->tcp", func(t *testing.T) (io.Reader, io.Writer, io.WriteCloser, io.Reader, func()) {
			a, b := tcpPair(t)
			c, d := tcpPair(t)
			smallBuffers(t, 16<<10, c, d)
			return b, c, a, d, func() { a.Close(); b.Close(); c.Close(); d.Close() }
		}},
		{"pipe->tcp", func(t *testing.T) (io.Reader, io.Writer, io.WriteCloser, io.Reader, func()) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			c, d := tcpPair(t)
			smallBuffers(t, 16<<10, c, d)
			return r, c, w, d, func() { r.Close(); w.Close(); c.Close(); d.Close() }
		}},
		{"tcp->pipe", func(t *testing.T) (io.Reader, io.Writer, io.WriteCloser, io.Reader, func()) {
			a, b := tcpPair(t)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			return b, w, a, r, func() { a.Close(); b.Close(); r.Close(); w.Close() }
		}},
		{"unix->unix", func(t *testing.T) (io.Reader, io.Writer, io.WriteCloser, io.Reader, func()) {
			a, b := unixPair(t)
			c, d := unixPair(t)
			return b, c, a, d, func() { a.Close(); b.Close(); c.Close(); d.Close() }
		}},
	}
}

// TestCloseRacesSyncCopies closes an engine at a random moment
// while many sync Copies (and CopyContext on a ctx that cannot end) move a known stream between sockets and pipes,
// their destinations read slowly. Close must return; each Copy ends with
// nil or an error wrapping ErrClosed; every byte read from a source
// either reached the destination (and is counted), is still in the
// source, or is reported lost in the error, in order; and after Close the
// caller's values carry no deadline: they read and write again.
func TestCloseRacesSyncCopies(t *testing.T) {
	fdtest.Check(t)
	const total = 1 << 20
	for round := 0; round < 4; round++ {
		e, err := NewEngine()
		if err != nil {
			t.Fatal(err)
		}
		type run struct {
			name       string
			src        io.Reader
			dst        io.Writer
			feed       io.WriteCloser
			peer       io.Reader
			closeAll   func()
			data       []byte
			n          int64
			err        error
			got        bytes.Buffer
			peerDone   chan struct{}
			copyDone   chan struct{}
			feedClosed chan struct{}
			viaContext bool
		}
		var runs []*run
		for _, tc := range closeRaceCases() {
			for i := 0; i < 3; i++ {
				src, dst, feedW, peer, closeAll := tc.pair(t)
				r := &run{name: tc.name, src: src, dst: dst, feed: feedW, peer: peer, closeAll: closeAll,
					viaContext: i == 1, data: fdtest.Random(total), peerDone: make(chan struct{}), copyDone: make(chan struct{}), feedClosed: make(chan struct{})}
				runs = append(runs, r)
			}
		}
		var wg sync.WaitGroup
		for _, r := range runs {
			wg.Add(3)
			go func() { // feed
				defer wg.Done()
				defer close(r.feedClosed)
				r.feed.Write(r.data) // fails once the test closes everything
			}()
			go func() { // slow reader of dst: reads a little at a time
				defer wg.Done()
				defer close(r.peerDone)
				buf := make([]byte, 4<<10)
				for {
					m, err := r.peer.Read(buf)
					r.got.Write(buf[:m])
					if err != nil {
						return
					}
				}
			}()
			go func() {
				defer wg.Done()
				defer close(r.copyDone)
				if r.viaContext {
					// A ctx that cannot end: the engine's lifetime too.
					r.n, r.err = e.CopyContext(context.Background(), r.dst, r.src)
				} else {
					r.n, r.err = e.Copy(r.dst, r.src)
				}
			}()
		}
		time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
		closeWithin(t, e, 30*time.Second)
		for _, r := range runs {
			select {
			case <-r.copyDone:
			case <-time.After(30 * time.Second):
				t.Fatalf("%s: Copy did not return after Close", r.name)
			}
			if r.err != nil && !errors.Is(r.err, ErrClosed) {
				t.Errorf("%s: Copy: %v, want nil or ErrClosed", r.name, r.err)
			}
			// The caller's values have no deadline left: the source reads
			// and the destination writes again.
			checkNoDeadline(t, r.name, r.dst)
		}
		for _, r := range runs {
			// The peer has all the copy delivered once dst ends.
			closeWrite(r.dst)
			<-r.peerDone
			lost := reportedLost(r.err)
			got := r.got.Bytes()
			if int64(len(got)) != r.n+1 { // + the byte checkNoDeadline wrote
				t.Errorf("%s: Copy returned %d, the peer got %d (+1 probe)", r.name, r.n, len(got))
				continue
			}
			if !bytes.Equal(got[:r.n], r.data[:r.n]) {
				t.Errorf("%s: the %d bytes delivered are not the start of the stream", r.name, r.n)
				continue
			}
			// The rest of the stream is in src after the lost bytes:
			// read it (the feed goes on once the copy stopped draining).
			want := r.data[r.n+int64(lost):]
			restc := make(chan []byte, 1)
			go func() { restc <- readAtLeast(r.src, nil, len(want)) }()
			var rest []byte
			select {
			case rest = <-restc:
			case <-time.After(20 * time.Second):
				r.closeAll()
				rest = <-restc
			}
			if len(rest) != len(want) || !bytes.Equal(rest, want) {
				t.Errorf("%s: n=%d lost=%d err=%v: the source holds %d bytes after, want the %d that follow (a byte lost or duplicated, or a read deadline left)",
					r.name, r.n, lost, r.err, len(rest), len(want))
			}
		}
		for _, r := range runs {
			r.closeAll()
		}
		wg.Wait()
	}
}

// readAtLeast reads src into buf until it holds n bytes or a read fails.
// It sets no deadline, so that one a copy left in the past fails it; if
// the bytes do not come, the caller's closeAll ends it.
func readAtLeast(src io.Reader, buf []byte, n int) []byte {
	tmp := make([]byte, 64<<10)
	for len(buf) < n {
		m, err := src.Read(tmp[:min(len(tmp), n-len(buf))])
		buf = append(buf, tmp[:m]...)
		if err != nil {
			break
		}
	}
	return buf
}

// checkNoDeadline writes a byte to dst: a write deadline left in the
// past fails it before anything else.
func checkNoDeadline(t *testing.T, name string, dst io.Writer) {
	t.Helper()
	if _, err := dst.Write([]byte{'!'}); err != nil {
		t.Errorf("%s: a write to dst after Close: %v", name, err)
	}
}

// closeWrite ends the write side of dst, so that its peer reads EOF.
func closeWrite(dst io.Writer) {
	switch w := dst.(type) {
	case interface{ CloseWrite() error }:
		w.CloseWrite()
	case io.Closer:
		w.Close()
	default:
		panic(fmt.Sprintf("closeWrite: %T", dst))
	}
}
