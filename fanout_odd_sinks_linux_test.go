//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// A fan-out into destinations the kernel refuses or treats specially,
// compared with io.Copy into each.

// TestAdv20FanOutOddSinks fans a file and a pipe out to two
// destinations of each kind the kernel refuses or treats specially
// (advOddSinks: datagram and seqpacket sockets, O_APPEND and O_DIRECT
// files, /dev/full, a directory, a closed file...) and wants from each
// destination io.Copy's count, bytes and error class on the same input.
//
// Two kinds differ from io.Copy by design, and the test states how:
//   - O_DIRECT: io.Copy from a file goes through copy_file_range,
//     which a fan-out, reading its source once for all destinations,
//     cannot: on ext4 its fallback writes the aligned part and then
//     fails, and io.Copy reports 0 bytes; on a file system that clones
//     extents (xfs, btrfs) it copies the whole file, unaligned tail and
//     all, with no error. From a file, the test wants instead what
//     io.Copy's own writes give (onlyWriter, onlyReader), which are
//     what FanOut makes. From either source, FanOut reports the bytes
//     that reached the file, which must equal that file's length.
//   - directory: io.Copy from a file fails with copy_file_range's
//     EISDIR, from a pipe with write(2)'s EBADF; FanOut writes, so it
//     must fail with one of the two.
func TestAdv20FanOutOddSinks(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(150<<10 + 7)
	srcs := []advEnd{
		{"file", func(t *testing.T) any { return fdtest.TempFile(t, data) }},
		pipeSource(data[:60000]),
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, src := range srcs {
			for _, sk := range advOddSinks() {
				t.Run(fmt.Sprintf("%s/%s->%s", ec.name, src.name, sk.name), func(t *testing.T) {
					w, finish := sk.make(t)
					var r io.Reader = src.make(t).(io.Reader)
					if sk.name == "O_DIRECT" && src.name == "file" {
						w, r = onlyWriter{w}, onlyReader{r} // io.Copy's writes, not copy_file_range
					}
					wantN, wantErr := io.Copy(w, r)
					want := finish()
					w1, fin1 := sk.make(t)
					w2, fin2 := sk.make(t)
					res := e.FanOut(context.Background(), src.make(t).(io.Reader), []io.Writer{w1, w2})
					for i, fin := range []func() []byte{fin1, fin2} {
						got, r := fin(), res[i]
						okN, okErr := r.Written == wantN, sameErr(r.Err, wantErr)
						switch sk.name {
						case "O_DIRECT":
							okN = okN || r.Written == int64(len(got))
						case "directory":
							okErr = errors.Is(r.Err, syscall.EISDIR) || errors.Is(r.Err, syscall.EBADF)
						}
						if !okN || !okErr || !bytes.Equal(got, want) {
							t.Errorf("FanOut[%d] = %d, %v (got %q); io.Copy = %d, %v (%q)",
								i, r.Written, r.Err, trunc(got), wantN, wantErr, trunc(want))
						}
					}
				})
			}
		}
	}
}
