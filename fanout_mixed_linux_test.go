//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// FanOut from every source kind into a mix of destinations, each
// destination compared with io.Copy into the same kind alone, under each
// policy, and a fan-out cancelled mid-copy. The destinations and the
// comparison here serve fanout_edge_cases_linux_test.go too.

// errAdv20 is the error of the test writers and readers that fail.
var errAdv20 = errors.New("adv20: injected failure")

// adv20Sink is a destination kind of the mixed fan-outs. cut: what it
// holds depends on how the stream is cut into writes (an O_DIRECT file
// takes only aligned writes, a message socket keeps their bounds).
type adv20Sink struct {
	name string
	cut  bool
	make func(t *testing.T) (io.Writer, func() []byte)
}

// adv20Sinks are the destinations of a mixed fan-out: those that take
// everything and those that fail, on a descriptor or not. With big, the
// message sockets are left out: their peers read only at the end.
func adv20Sinks(big bool) []adv20Sink {
	var out []adv20Sink
	for _, k := range advSinks {
		out = append(out, adv20Sink{k, false, func(t *testing.T) (io.Writer, func() []byte) { return advSink(t, k) }})
	}
	for _, sk := range advOddSinks() {
		switch sk.name {
		case "O_APPEND", "O_WRONLY-mid", "dev-full", "closed-file":
			out = append(out, adv20Sink{sk.name, false, sk.make})
		case "O_DIRECT":
			out = append(out, adv20Sink{sk.name, true, sk.make})
		case "unix-dgram", "unix-seqpacket":
			if !big {
				out = append(out, adv20Sink{sk.name, true, sk.make})
			}
		}
	}
	return append(out,
		adv20Sink{"buffer", false, func(t *testing.T) (io.Writer, func() []byte) {
			b := new(bytes.Buffer)
			return b, b.Bytes
		}},
		adv20Sink{"short-1000", false, func(t *testing.T) (io.Writer, func() []byte) {
			var b bytes.Buffer
			return onlyWriter{writerFunc(func(p []byte) (int, error) {
				return b.Write(p[:min(len(p), 1000)])
			})}, b.Bytes
		}},
		adv20Sink{"fail-after-70001", false, func(t *testing.T) (io.Writer, func() []byte) {
			var b bytes.Buffer
			return onlyWriter{writerFunc(func(p []byte) (int, error) {
				room := 70001 - b.Len()
				if len(p) <= room {
					return b.Write(p)
				}
				b.Write(p[:room])
				return room, errAdv20
			})}, b.Bytes
		}},
	)
}

// adv20Source is a source kind: make returns a fresh source yielding
// data. uneven: the fan-out's chunks of it are not cut where io.Copy's
// reads are, and the bytes of one are not all there when the one before
// is written: a connection's come as they arrive, and a file read from
// an unaligned offset is spliced in page fragments (the kernel fan-out
// writes a destination it does not splice into what its private pipe
// holds, 32 KiB at most, not waiting for the next chunk). fixed: a
// source of its own content (data is ignored).
type adv20Source struct {
	name          string
	uneven, fixed bool
	make          func(t *testing.T, data []byte) io.Reader
}

// streamSource returns the reading end of a connection of kind ("pipe",
// "blocking-pipe", "tcp", "unix") whose other end writes data and
// closes.
func streamSource(t *testing.T, kind string, data []byte) io.Reader {
	var r io.ReadCloser
	var w io.WriteCloser
	switch kind {
	case "pipe":
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		r, w = pr, pw
	case "blocking-pipe":
		// os.NewFile of a descriptor without O_NONBLOCK: read
		// through userspace, in poll(2) slices.
		var fds [2]int
		if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		r, w = os.NewFile(uintptr(fds[0]), "|0"), os.NewFile(uintptr(fds[1]), "|1")
	case "tcp":
		a, b := tcpPair(t)
		r, w = b, a
	case "unix":
		a, b := unixPair(t)
		r, w = b, a
	}
	feedQuietly(t, w, data)
	// Closed first: a write to a pipe in blocking mode waits in the
	// kernel, where closing the write end does not end it.
	t.Cleanup(func() { r.Close() })
	return r
}

// dataErrReader yields data in pieces of step bytes and returns err with
// the last piece, as a Read may (n > 0 and an error together).
type dataErrReader struct {
	data []byte
	step int
	err  error
}

func (r *dataErrReader) Read(p []byte) (int, error) {
	n := copy(p, r.data[:min(len(r.data), r.step)])
	r.data = r.data[n:]
	if len(r.data) == 0 {
		return n, r.err
	}
	return n, nil
}

// stutterReader returns (0, nil) before every piece, and pieces of
// varying sizes.
type stutterReader struct {
	data []byte
	i    int
}

func (r *stutterReader) Read(p []byte) (int, error) {
	r.i++
	if r.i%2 == 1 {
		return 0, nil
	}
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.data[:min(len(r.data), 1+(r.i*7919)%40000)])
	r.data = r.data[n:]
	return n, nil
}

func adv20Sources() []adv20Source {
	file := func(t *testing.T, data []byte) *os.File { return fdtest.TempFile(t, data) }
	out := []adv20Source{
		{"file", false, false, func(t *testing.T, data []byte) io.Reader { return file(t, data) }},
		{"file-offset-limited", true, false, func(t *testing.T, data []byte) io.Reader {
			f := file(t, append([]byte("0123456789"), data...))
			f.Seek(10, io.SeekStart)
			return &io.LimitedReader{R: f, N: int64(len(data))}
		}},
		{"file-limit-past-end", false, false, func(t *testing.T, data []byte) io.Reader {
			return &io.LimitedReader{R: file(t, data), N: int64(len(data)) + 12345}
		}},
		{"bytes-reader", false, false, func(t *testing.T, data []byte) io.Reader { return bytes.NewReader(data) }},
		{"data-eof", false, false, func(t *testing.T, data []byte) io.Reader {
			return &dataErrReader{data: data, step: 50000, err: io.EOF}
		}},
		{"data-err", false, false, func(t *testing.T, data []byte) io.Reader {
			return &dataErrReader{data: data, step: 50000, err: errAdv20}
		}},
		{"half-reader", false, false, func(t *testing.T, data []byte) io.Reader {
			return iotest.HalfReader(bytes.NewReader(data))
		}},
		{"timeout-reader", false, false, func(t *testing.T, data []byte) io.Reader {
			return iotest.TimeoutReader(bytes.NewReader(data))
		}},
		{"stutter", false, false, func(t *testing.T, data []byte) io.Reader { return &stutterReader{data: data} }},
		{"dev-zero-limited", false, true, func(t *testing.T, _ []byte) io.Reader {
			return &io.LimitedReader{R: openPath(t, "/dev/zero", os.O_RDONLY), N: 100<<10 + 1}
		}},
		{"proc-version", false, true, func(t *testing.T, _ []byte) io.Reader {
			return openPath(t, "/proc/version", os.O_RDONLY)
		}},
	}
	for _, k := range []string{"pipe", "blocking-pipe", "tcp", "unix"} {
		out = append(out,
			adv20Source{k, true, false, func(t *testing.T, data []byte) io.Reader { return streamSource(t, k, data) }},
			adv20Source{k + "-limited", true, false, func(t *testing.T, data []byte) io.Reader {
				// The stream has 5 bytes more than the limit lets through.
				return &io.LimitedReader{R: streamSource(t, k, append(bytes.Clone(data), "extra"...)), N: int64(len(data))}
			}},
		)
	}
	return out
}

// adv20Compare runs io.Copy's loop from src into each sink alone, then
// one FanOut from src into all of them, and wants from each destination
// io.Copy's count, bytes and error class.
//
// io.Copy runs as its loop (32 KiB reads, each written whole), with the
// source's WriteTo and the destination's ReadFrom hidden: a fan-out
// reads its source once for every destination, so it can follow
// neither, by design. Each would change io.Copy's answer: a
// *bytes.Reader writes everything in one Write (one datagram, one
// O_DIRECT write that fails whole); a *bytes.Buffer reads 512 bytes at
// first; *os.File and the sockets try copy_file_range and splice first,
// which fail where write(2) does not (Go's splice from a socket into
// /dev/full or an O_DIRECT file fails with EINVAL, with no write(2)
// after it), or report 0 bytes for an O_DIRECT file that holds some.
func adv20Compare(t *testing.T, e *Engine, mkSrc func(t *testing.T) io.Reader, sinks []adv20Sink, opts ...FanOutOption) {
	type want struct {
		n   int64
		err error
		got []byte
	}
	wants := make([]want, len(sinks))
	for i, sk := range sinks {
		w, finish := sk.make(t)
		n, err := io.Copy(onlyWriter{w}, onlyReader{mkSrc(t)})
		wants[i] = want{n, err, finish()}
	}
	dsts := make([]io.Writer, len(sinks))
	fins := make([]func() []byte, len(sinks))
	for i, sk := range sinks {
		dsts[i], fins[i] = sk.make(t)
	}
	res := e.FanOut(context.Background(), mkSrc(t), dsts, opts...)
	for i, sk := range sinks {
		got, r, w := fins[i](), res[i], wants[i]
		okErr := sameErr(r.Err, w.err)
		for _, target := range []error{errAdv20, iotest.ErrTimeout, io.ErrShortWrite} {
			okErr = okErr && errors.Is(r.Err, target) == errors.Is(w.err, target)
		}
		if r.Written != w.n || !okErr || !bytes.Equal(got, w.got) {
			t.Errorf("%s: FanOut = %d, %v (got %d bytes %q); io.Copy = %d, %v (%d bytes %q)",
				sk.name, r.Written, r.Err, len(got), trunc(got), w.n, w.err, len(w.got), trunc(w.got))
		}
	}
}

// TestAdv20bFanOutMixed fans every source kind, at sizes around the
// chunk sizes, out to one destination of every kind at once, the
// failing ones among them, and wants from each what io.Copy gives it
// alone (adv20Compare): a destination that fails must not change what
// the others get. A stream source is not fanned out into a destination
// whose outcome depends on how the stream is cut (adv20Sink.cut) when
// the fan-out's cuts are not io.Copy's (adv20Source.uneven).
//
// Before, the fan-out wrote 64 KiB at a time where io.Copy writes
// 32 KiB: to a destination it does not splice into (a message socket
// got 64 KiB datagrams), and from a source without a descriptor (it read
// 64 KiB chunks: an O_DIRECT file failed on writes io.Copy's sizes
// pass, a source's short reads and errors fell elsewhere in the stream).
func TestAdv20bFanOutMixed(t *testing.T) {
	fdtest.Check(t)
	sizes := []int{0, 1, 64<<10 - 1, 64<<10 + 1, 1<<20 + 5}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, src := range adv20Sources() {
			for _, size := range sizes {
				if src.fixed && size > 0 {
					break
				}
				data := fdtest.Random(size)
				sinks := slices.DeleteFunc(adv20Sinks(size > 100<<10), func(s adv20Sink) bool { return src.uneven && s.cut })
				t.Run(fmt.Sprintf("%s/%s/%d", ec.name, src.name, size), func(t *testing.T) {
					adv20Compare(t, e, func(t *testing.T) io.Reader { return src.make(t, data) }, sinks)
				})
			}
		}
	}
}

// TestAdv20bFanOutMixedPolicies is TestAdv20bFanOutMixed's comparison
// under the other policies: small buffers and eviction (with a deadline
// no destination here reaches), which change when the source is read,
// not what any destination gets. A buffer of a page makes chunks of a
// page, which the kernel fan-out writes as they come to a destination
// it does not splice into (uneven): the destinations that keep the
// cuts are left out there.
func TestAdv20bFanOutMixedPolicies(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(200<<10 + 3)
	policies := []struct {
		name string
		opts []FanOutOption
	}{
		{"buffer-1", []FanOutOption{FanOutBuffer(1)}},
		{"buffer-100k", []FanOutOption{FanOutBuffer(100 << 10)}},
		{"evict", []FanOutOption{FanOutEvictAfter(time.Minute)}},
	}
	e := newTestEngine(t)
	for _, src := range adv20Sources() {
		if src.fixed {
			continue
		}
		switch src.name {
		case "file", "file-offset-limited", "data-err", "half-reader", "pipe", "blocking-pipe-limited", "tcp":
		default:
			continue
		}
		for _, pol := range policies {
			uneven := src.uneven || pol.name == "buffer-1"
			sinks := slices.DeleteFunc(adv20Sinks(true), func(s adv20Sink) bool { return uneven && s.cut })
			t.Run(src.name+"/"+pol.name, func(t *testing.T) {
				adv20Compare(t, e, func(t *testing.T) io.Reader { return src.make(t, data) }, sinks, pol.opts...)
			})
		}
	}
}

// TestAdv20bFanOutCancelMidCopy cancels a fan-out from inside one
// destination's first Write, while the others take bytes as fast as
// they come: each destination must end whole (nil, every byte) or with
// an error wrapping context.Canceled, its Written exactly the bytes it
// holds, a prefix of the source, on the kernel path and the userspace
// one, with each policy.
func TestAdv20bFanOutCancelMidCopy(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(4<<20 + 3)
	srcs := []struct {
		name string
		make func(t *testing.T) io.Reader
	}{
		{"file", func(t *testing.T) io.Reader { return fdtest.TempFile(t, data) }},
		{"pipe", func(t *testing.T) io.Reader { return streamSource(t, "pipe", data) }},
		{"tcp", func(t *testing.T) io.Reader { return streamSource(t, "tcp", data) }},
		{"reader", func(t *testing.T) io.Reader { return onlyReader{bytes.NewReader(data)} }},
	}
	policies := []struct {
		name string
		opts []FanOutOption
	}{
		{"wait", nil},
		{"evict", []FanOutOption{FanOutEvictAfter(time.Minute)}},
		{"small", []FanOutOption{FanOutBuffer(1)}},
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, src := range srcs {
			for _, pol := range policies {
				t.Run(fmt.Sprintf("%s/%s/%s", ec.name, src.name, pol.name), func(t *testing.T) {
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					var trig bytes.Buffer
					dsts := []io.Writer{onlyWriter{writerFunc(func(p []byte) (int, error) {
						cancel()
						return trig.Write(p)
					})}}
					fins := []func() []byte{func() []byte { return trig.Bytes() }}
					for _, k := range []string{"pipe", "tcp", "unix", "file", "writer"} {
						w, fin := advSink(t, k)
						dsts, fins = append(dsts, w), append(fins, fin)
					}
					res := e.FanOut(ctx, src.make(t), dsts, pol.opts...)
					for i, fin := range fins {
						got, r := fin(), res[i]
						whole := r.Err == nil && bytes.Equal(got, data)
						cut := errors.Is(r.Err, context.Canceled) && int64(len(got)) == r.Written && bytes.Equal(got, data[:len(got)])
						if !whole && !cut {
							t.Errorf("destination %d: Written %d, %v; got %d bytes (a prefix: %v)",
								i, r.Written, r.Err, len(got), bytes.HasPrefix(data, got))
						}
					}
				})
			}
		}
	}
}
