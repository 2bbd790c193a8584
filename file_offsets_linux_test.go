//go:build linux && !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// The state a copy leaves in the files it touches, which must be what
// io.Copy leaves. Sources at odd offsets and behind io.LimitedReader or
// io.SectionReader, destinations at odd offsets, behind io.OffsetWriter,
// opened O_APPEND, or reached through a syscall.Conn that is not an
// *os.File (so that the kernel path writes the file); offsets and limits
// past 4 GiB on sparse files; memfds, sealed ones among them; terminals,
// /dev/zero, /proc and /sys files; a source truncated under the copy;
// and cancels mid-copy. Every case is run with io.Copy and with each
// engine on fresh ends of the same kind.

// adv8After is what a copy left: its result and the state of its ends.
type adv8After struct {
	n      int64
	err    error
	got    []byte // what the destination holds (or its peer received); nil: not known
	srcOff int64  // the source file's offset; -1: not a file
	dstOff int64  // the destination file's offset; -1: not a file
	lrN    int64  // the source's LimitedReader.N; -1: none

	start, limit int64 // srcOff and lrN before the copy
}

func (a adv8After) String() string {
	return fmt.Sprintf("(%d, %v) got %d bytes, src offset %d, dst offset %d, N %d",
		a.n, a.err, len(a.got), a.srcOff, a.dstOff, a.lrN)
}

// adv8Src is a source factory: make returns a fresh source holding data
// (or the part of it the kind stands for), and state, which reports its
// offset and LimitedReader.N once the copy has returned.
type adv8Src struct {
	name string
	make func(t *testing.T, data []byte) (r io.Reader, state func() (off, n int64))
}

// adv8Dst is a destination factory: make returns a fresh destination
// and state, which ends the destination's part of the copy and reports
// what it holds and its offset.
type adv8Dst struct {
	name string
	make func(t *testing.T) (w io.Writer, state func() (got []byte, off int64))
}

// connFile is a regular file behind a syscall.Conn that is not an
// *os.File: the engine writes it with splice(2) (or the ring's reads
// drain into it), where between two *os.File it leaves the copy to
// io.Copy's copy_file_range(2). io.Copy writes it with Write.
type connFile struct{ f *os.File }

func (c connFile) Write(p []byte) (int, error)               { return c.f.Write(p) }
func (c connFile) SyscallConn() (syscall.RawConn, error)     { return c.f.SyscallConn() }
func (c connFile) Read(p []byte) (int, error)                { return c.f.Read(p) }
func (c connFile) Seek(off int64, whence int) (int64, error) { return c.f.Seek(off, whence) }

// fileOff is f's offset, or -2 where it cannot be read.
func fileOff(f *os.File) int64 {
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return -2
	}
	return off
}

// memfd returns a new memfd holding data, at offset 0.
func memfd(t *testing.T, data []byte, flags int) *os.File {
	fd, err := unix.MemfdCreate("adv8", unix.MFD_CLOEXEC|flags)
	f := newFD(t, fd, err, "memfd")
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	return f
}

// fdContents reads all of what the descriptor of f holds, through a new
// open file description (f's offset stays where it is).
func fdContents(t *testing.T, f *os.File) []byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err != nil {
		t.Errorf("read back %s: %v", f.Name(), err)
	}
	return b
}

// fileDst is f as a copy's destination, behind a connFile where conn is
// set (so that the engine writes it with splice(2) from a regular file
// too), with state, what tells its contents and offset after the copy.
func fileDst(f *os.File, conn bool, state func() ([]byte, int64)) (io.Writer, func() ([]byte, int64)) {
	if conn {
		return connFile{f}, state
	}
	return f, state
}

// fileAt is f read from off (not moved where off is 0), under an
// *io.LimitedReader of limit where limit >= 0, with what tells its offset
// and N (-1 for no limit) after a copy.
func fileAt(t *testing.T, f *os.File, off, limit int64) (io.Reader, func() (int64, int64)) {
	t.Helper()
	if off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
	}
	if limit < 0 {
		return f, func() (int64, int64) { return fileOff(f), -1 }
	}
	lr := &io.LimitedReader{R: f, N: limit}
	return lr, func() (int64, int64) { return fileOff(f), lr.N }
}

// fedPipe is the read end of a pipe that data is fed into (feedQuietly),
// closed when the test ends.
func fedPipe(t *testing.T, data []byte) *os.File {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	feedQuietly(t, w, data)
	return r
}

// adv8Sources are sources with an offset or a limit. The socket kinds
// are unix stream sockets: the engine takes the same paths as for TCP
// (sendfile, the splice loop), and hundreds of copies leave no
// connections in TIME_WAIT to exhaust the ephemeral ports.
func adv8Sources() []adv8Src {
	file := func(off, limit int64, mem bool) func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
		return func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
			var f *os.File
			if mem {
				f = memfd(t, data, 0)
			} else {
				f = fdtest.TempFile(t, data)
			}
			return fileAt(t, f, off, limit)
		}
	}
	conn := func(kind string) func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
		return func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
			return quietSource(t, kind, data), func() (int64, int64) { return -1, -1 }
		}
	}
	srcs := []adv8Src{
		{"pipe", func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
			return fedPipe(t, data), func() (int64, int64) { return -1, -1 }
		}},
		{"unix", conn("unix")},
		{"section", func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
			f := fdtest.TempFile(t, data)
			f.Seek(5, io.SeekStart) // a SectionReader reads at its own offsets
			return io.NewSectionReader(f, 4095, int64(len(data))/2), func() (int64, int64) { return fileOff(f), -1 }
		}},
		{"pipe-limited", func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
			lr := &io.LimitedReader{R: fedPipe(t, data), N: 70001}
			return lr, func() (int64, int64) { return -1, lr.N }
		}},
	}
	dev := func(path string, off, limit int64) func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
		return func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
			return fileAt(t, openPath(t, path, os.O_RDONLY), off, limit)
		}
	}
	srcs = append(srcs,
		adv8Src{"dev-zero/N=300001", dev("/dev/zero", 0, 300001)},
		adv8Src{"proc-version@5", dev("/proc/version", 5, -1)},
		adv8Src{"proc-version@5/N=7", dev("/proc/version", 5, 7)},
		adv8Src{"sys-online@1", dev("/sys/devices/system/cpu/online", 1, -1)},
	)
	for _, mem := range []bool{false, true} {
		kind := "file"
		if mem {
			kind = "memfd"
		}
		for _, ol := range [][2]int64{{0, -1}, {4097, -1}, {1 << 20, -1}, {3, 65537}, {4095, 1 << 40}, {1<<16 + 1, 0}, {7, 1}} {
			srcs = append(srcs, adv8Src{fmt.Sprintf("%s@%d/N=%d", kind, ol[0], ol[1]), file(ol[0], ol[1], mem)})
		}
	}
	return srcs
}

// adv8Prefix is what a destination file holds before the copy.
var adv8Prefix = bytes.Repeat([]byte("0123456789abcdef"), 640) // 10 KiB

// adv8Dests are destinations with an offset, and the plain kinds.
func adv8Dests() []adv8Dst {
	file := func(off int64, flag int, wrap string) func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
		return func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
			var f *os.File
			if wrap == "memfd" {
				f = memfd(t, adv8Prefix, 0)
			} else {
				path := filepath.Join(t.TempDir(), "dst")
				if err := os.WriteFile(path, adv8Prefix, 0o600); err != nil {
					t.Fatal(err)
				}
				f = openPath(t, path, os.O_RDWR|flag)
			}
			if _, err := f.Seek(off, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			state := func() ([]byte, int64) { return fdContents(t, f), fileOff(f) }
			switch wrap {
			case "conn":
				return connFile{f}, state
			case "offsetwriter":
				return io.NewOffsetWriter(f, off+1), state
			}
			return f, state
		}
	}
	dsts := []adv8Dst{
		{"pipe", func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
			w, finish := captureSink(t, "pipe")
			return w, func() ([]byte, int64) { return finish(), -1 }
		}},
		{"unix", func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
			w, finish := advSink(t, "unix")
			return w, func() ([]byte, int64) { return finish(), -1 }
		}},
		{"dev-null", func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
			f := openPath(t, "/dev/null", os.O_WRONLY)
			return f, func() ([]byte, int64) { return nil, fileOff(f) }
		}},
		{"append", file(3, os.O_APPEND, "")},
		{"append-conn", file(3, os.O_APPEND, "conn")},
	}
	for _, wrap := range []string{"", "conn", "memfd", "offsetwriter"} {
		for _, off := range []int64{0, 3, int64(len(adv8Prefix)), int64(len(adv8Prefix)) + 4099} {
			name := wrap
			if name == "" {
				name = "file"
			}
			dsts = append(dsts, adv8Dst{fmt.Sprintf("%s@%d", name, off), file(off, 0, wrap)})
		}
	}
	return dsts
}

// adv8Run runs one copy with copy on fresh ends and returns what it left.
func adv8Run(t *testing.T, src adv8Src, dst adv8Dst, data []byte, copy func(io.Writer, io.Reader) (int64, error)) adv8After {
	r, srcState := src.make(t, data)
	w, dstState := dst.make(t)
	var a adv8After
	a.start, a.limit = srcState()
	a.n, a.err = copy(w, r)
	a.got, a.dstOff = dstState()
	a.srcOff, a.lrN = srcState()
	return a
}

// adv8Same reports how pipes' b differs from io.Copy's a, or "". Where
// the copy failed, io.Copy's source offset is past the bytes it read and
// could not write (up to a buffer of them), and its LimitedReader.N
// counts them as read. The engine's kernel paths leave a regular-file
// source just after the bytes delivered instead (docs/design.md,
// "Cancellation": bytes read and not delivered are put back): either is
// taken, as long as LimitedReader.N agrees with the offset.
func adv8Same(a, b adv8After) string {
	switch {
	case a.n != b.n || !sameErr(a.err, b.err):
		return "result"
	case !bytes.Equal(a.got, b.got):
		return "destination's bytes"
	case a.dstOff != b.dstOff:
		return "destination offset"
	case a.srcOff != b.srcOff && (b.err == nil || b.srcOff != b.start+b.n):
		return "source offset"
	case b.err != nil && b.lrN >= 0 && b.srcOff >= 0 && b.lrN != b.limit-(b.srcOff-b.start):
		return "LimitedReader.N (for the source offset)"
	case a.lrN != b.lrN && (b.err == nil || b.srcOff < 0):
		return "LimitedReader.N"
	}
	return ""
}

// TestAdv8Offsets copies from sources at odd offsets and limits into
// destinations at odd offsets, with io.Copy and with each engine (on the
// ring engine case every copy from a file takes the ring), and wants
// io.Copy's count, error class, destination bytes, offsets of both files
// and LimitedReader.N.
func TestAdv8Offsets(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(1<<20 + 200<<10 + 123)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, src := range adv8Sources() {
			for _, dst := range adv8Dests() {
				t.Run(fmt.Sprintf("%s/%s->%s", ec.name, src.name, dst.name), func(t *testing.T) {
					want := adv8Run(t, src, dst, data, io.Copy)
					got := adv8Run(t, src, dst, data, e.Copy)
					if what := adv8Same(want, got); what != "" {
						t.Errorf("%s differs:\n  pipes   %v\n  io.Copy %v", what, got, want)
					}
				})
			}
		}
	}
}

// maxSeek returns the largest offset lseek(2) takes for f: the file
// system's largest file size (s_maxbytes).
func maxSeek(t *testing.T, f *os.File) int64 {
	lo, hi := int64(0), int64(math.MaxInt64)
	for lo < hi {
		mid := lo + (hi-lo)/2 + 1
		if _, err := f.Seek(mid, io.SeekStart); err == nil {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	return lo
}

// atOffset moves f's offset to off, and returns it; off < 0 is counted
// from the largest offset f takes (-1: that offset).
func atOffset(t *testing.T, f *os.File, off int64) int64 {
	if off < 0 {
		off += maxSeek(t, f) + 1
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	return off
}

// sparseSrc is a source reading a sparse file of size 4 GiB + 1 MiB,
// whose data (of 64 KiB on either side of 4 GiB) is data's, from offset
// off (atOffset) with a limit (limit < 0: none).
func sparseSrc(off, limit int64, mem bool) func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
	return func(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
		var f *os.File
		if mem {
			f = memfd(t, nil, 0)
		} else {
			f = openPath(t, filepath.Join(t.TempDir(), "sparse"), os.O_RDWR|os.O_CREATE)
		}
		if err := f.Truncate(1<<32 + 1<<20); err != nil {
			t.Skip(err)
		}
		if _, err := f.WriteAt(data[:128<<10], 1<<32-64<<10); err != nil {
			t.Skip(err)
		}
		atOffset(t, f, off)
		if limit < 0 {
			return f, func() (int64, int64) { return fileOff(f), -1 }
		}
		lr := &io.LimitedReader{R: f, N: limit}
		return lr, func() (int64, int64) { return fileOff(f), lr.N }
	}
}

// sparseDst is a destination file (or memfd) written at offset off
// (atOffset). What it holds is read back from 16 bytes before off.
func sparseDst(off int64, mem, conn bool) func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
	return func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
		var f *os.File
		if mem {
			f = memfd(t, nil, 0)
		} else {
			f = openPath(t, filepath.Join(t.TempDir(), "sparse"), os.O_RDWR|os.O_CREATE)
		}
		off := atOffset(t, f, off)
		state := func() ([]byte, int64) {
			st, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			from := max(off-16, 0)
			b := make([]byte, max(st.Size()-from, 0))
			if _, err := f.ReadAt(b, from); err != nil && err != io.EOF {
				t.Errorf("read back: %v", err)
			}
			return b, fileOff(f)
		}
		return fileDst(f, conn, state)
	}
}

// TestAdv8Beyond4GiB copies across 4 GiB of sparse files, with limits
// near and past the int32 and uint32 bounds, and writes near the largest
// offset a file system takes (where the destination ends with EFBIG
// after a short write, and a source read fails with EINVAL): every case
// must leave what io.Copy leaves. The one copy of more than 4 GiB (holes
// read to /dev/null) runs only without -short.
func TestAdv8Beyond4GiB(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(256 << 10)
	const g4 = 1 << 32
	type pair struct {
		src  adv8Src
		dsts []string
	}
	srcs := []adv8Src{}
	for _, mem := range []bool{false, true} {
		kind := "file"
		if mem {
			kind = "memfd"
		}
		for _, ol := range [][2]int64{
			{g4 - 5000, -1}, {g4 - 5000, g4}, {g4 - 5000, g4 + 5}, {g4 - 100, 200},
			{g4 - 7, 1<<31 - 1}, {g4 + 3, 1 << 31}, {g4 - 4096, g4 - 1}, {g4 - 1, math.MaxInt64},
			{-11, -1}, {-11, 100}, {-1, 5},
		} {
			srcs = append(srcs, adv8Src{fmt.Sprintf("%s@%d/N=%d", kind, ol[0], ol[1]), sparseSrc(ol[0], ol[1], mem)})
		}
	}
	dsts := []adv8Dst{
		{"pipe", adv8Dests()[0].make},
		{"unix", adv8Dests()[1].make},
		{"dev-null", adv8Dests()[2].make},
	}
	for _, mem := range []bool{false, true} {
		for _, conn := range []bool{false, true} {
			for _, off := range []int64{g4 - 3, g4 + 1, -1001, -1} {
				name := "file"
				if mem {
					name = "memfd"
				}
				if conn {
					name += "-conn"
				}
				dsts = append(dsts, adv8Dst{fmt.Sprintf("%s@%d", name, off), sparseDst(off, mem, conn)})
			}
		}
	}
	cases := []pair{}
	for _, s := range srcs {
		cases = append(cases, pair{s, nil})
	}
	if !testing.Short() && !raceEnabled {
		// 4 GiB of holes and then some: seconds, not minutes (but half
		// a minute under the race detector, which adds nothing to a copy
		// made by the kernel).
		cases = append(cases, pair{adv8Src{"file@0/N=4GiB+5", sparseSrc(0, g4+5, false)}, []string{"dev-null"}})
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, c := range cases {
			for _, dst := range dsts {
				if c.dsts != nil && !slices.Contains(c.dsts, dst.name) {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s->%s", ec.name, c.src.name, dst.name), func(t *testing.T) {
					if strings.HasPrefix(c.src.name, "file@-1/") && dst.name == "unix" {
						// At the largest offset sendfile(2) fails with
						// EOVERFLOW, read(2) finds EOF: io.Copy itself
						// answers either, by the path Go takes (into a
						// TCPConn: EOVERFLOW; a LimitedReader into a
						// UnixConn: nil). pipes answers EOVERFLOW.
						t.Skip("io.Copy's answer depends on its path")
					}
					want := adv8Run(t, c.src, dst, data, io.Copy)
					got := adv8Run(t, c.src, dst, data, e.Copy)
					if what := adv8Same(want, got); what != "" {
						t.Errorf("%s differs:\n  pipes   %v\n  io.Copy %v", what, got, want)
					}
				})
			}
		}
	}
}

// sealedMemfd is a destination memfd holding 4 KiB, sealed with seals,
// written from offset off; conn hides it behind a connFile.
func sealedMemfd(seals int, off int64, conn bool) func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
	return func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
		f := memfd(t, adv8Prefix[:4096], unix.MFD_ALLOW_SEALING)
		if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
			t.Skipf("F_ADD_SEALS: %v", err)
		}
		atOffset(t, f, off)
		state := func() ([]byte, int64) { return fdContents(t, f), fileOff(f) }
		return fileDst(f, conn, state)
	}
}

// directFile is a destination file opened O_DIRECT, written at off.
func directFile(off int64, conn bool) func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
	return func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
		path := filepath.Join(t.TempDir(), "direct")
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_DIRECT, 0o600)
		if err != nil {
			t.Skipf("O_DIRECT: %v", err)
		}
		t.Cleanup(func() { f.Close() })
		atOffset(t, f, off)
		return fileDst(f, conn, func() ([]byte, int64) { return fdContents(t, f), fileOff(f) })
	}
}

// openPty opens a pty pair in raw mode, non-blocking (on the netpoller,
// as os.OpenFile leaves them), closed when the test ends.
func openPty(t *testing.T) (master, slave *os.File) {
	m := openPath(t, "/dev/ptmx", os.O_RDWR|unix.O_NOCTTY)
	var n int
	var err error
	rc, _ := m.SyscallConn()
	rc.Control(func(fd uintptr) {
		if err = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); err == nil {
			n, err = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
		}
	})
	if err != nil {
		t.Skip(err)
	}
	s := openPath(t, fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY)
	rc, _ = s.SyscallConn()
	rc.Control(func(fd uintptr) {
		var tio *unix.Termios
		if tio, err = unix.IoctlGetTermios(int(fd), unix.TCGETS); err == nil {
			cfmakeraw(tio)
			err = unix.IoctlSetTermios(int(fd), unix.TCSETS, tio)
		}
	})
	if err != nil {
		t.Skip(err)
	}
	return m, s
}

// ptyDst is a destination end of a pty (the master, or the slave): its
// other end is read until want bytes have come, or for 10 s at most
// (a guard against a hang, not a timed assertion: every copy into it
// delivers want bytes).
func ptyDst(master bool, want int) func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
	return func(t *testing.T) (io.Writer, func() ([]byte, int64)) {
		m, s := openPty(t)
		w, r := s, m
		if master {
			w, r = m, s
		}
		got := make(chan []byte, 1)
		go func() {
			var all []byte
			buf := make([]byte, 64<<10)
			r.SetReadDeadline(time.Now().Add(10 * time.Second))
			for len(all) < want {
				n, err := r.Read(buf)
				all = append(all, buf[:n]...)
				if err != nil {
					break
				}
			}
			got <- all
		}()
		return w, func() ([]byte, int64) { return <-got, -1 }
	}
}

// TestAdv8Descriptors copies into and out of unusual descriptors:
// sealed memfds (F_SEAL_WRITE: every write fails; F_SEAL_GROW: a short
// write, then EPERM), O_DIRECT files at aligned and odd offsets, both
// ends of a pty: every copy must leave what io.Copy leaves, and none may
// report a short copy as a success.
func TestAdv8Descriptors(t *testing.T) {
	fdtest.Check(t)
	const size = 64<<10 + 4096
	data := fdtest.Random(size)
	srcs := []adv8Src{}
	for _, src := range adv8Sources() {
		switch src.name {
		case "pipe", "unix", "file@0/N=-1", "file@4097/N=-1", "memfd@3/N=65537", "file@4095/N=1099511627776":
			srcs = append(srcs, src)
		}
	}
	dsts := []adv8Dst{
		{"pty-slave", ptyDst(false, size)},
		{"pty-master", ptyDst(true, size)},
	}
	for _, conn := range []bool{false, true} {
		suffix := ""
		if conn {
			suffix = "-conn"
		}
		dsts = append(dsts,
			adv8Dst{"memfd-seal-write" + suffix, sealedMemfd(unix.F_SEAL_WRITE, 0, conn)},
			adv8Dst{"memfd-seal-future-write" + suffix, sealedMemfd(unix.F_SEAL_FUTURE_WRITE, 100, conn)},
			adv8Dst{"memfd-seal-grow@0" + suffix, sealedMemfd(unix.F_SEAL_GROW, 0, conn)},
			adv8Dst{"memfd-seal-grow@4000" + suffix, sealedMemfd(unix.F_SEAL_GROW|unix.F_SEAL_SHRINK, 4000, conn)},
			adv8Dst{"memfd-seal-grow@5000" + suffix, sealedMemfd(unix.F_SEAL_GROW, 5000, conn)},
			adv8Dst{"memfd-seal-shrink@4000" + suffix, sealedMemfd(unix.F_SEAL_SHRINK, 4000, conn)},
			adv8Dst{"o-direct@0" + suffix, directFile(0, conn)},
			adv8Dst{"o-direct@4096" + suffix, directFile(4096, conn)},
			adv8Dst{"o-direct@100" + suffix, directFile(100, conn)},
		)
	}
	// One-page pipes hold one socket fragment at a time, of any length:
	// what an O_DIRECT file refuses to take by splice.
	ecs := append(engineCases(t), engineCase{"pipe-size-1", []Option{WithPipeSize(1)}})
	for _, ec := range ecs {
		e := newTestEngine(t, ec.opts...)
		for _, src := range srcs {
			for _, dst := range dsts {
				t.Run(fmt.Sprintf("%s/%s->%s", ec.name, src.name, dst.name), func(t *testing.T) {
					if strings.HasPrefix(dst.name, "pty") && strings.Contains(src.name, "N=") {
						t.Skip("the pty's reader waits for every byte")
					}
					ref := io.Copy
					if src.name == "unix" && strings.HasPrefix(dst.name, "o-direct") {
						// io.Copy into an *os.File splices socket ->
						// pipe -> file (os.File.ReadFrom): the file
						// refuses the socket's pages (EINVAL) after
						// they left the socket, and io.Copy returns
						// (0, EINVAL) with them lost. pipes writes
						// them, as io.Copy's buffer loop does, which
						// is the reference here.
						ref = func(w io.Writer, r io.Reader) (int64, error) {
							return io.Copy(struct{ io.Writer }{w}, r)
						}
						// An O_DIRECT file takes only aligned
						// lengths, so what either copy writes
						// depends on the lengths its reads return:
						// the source holds every byte before the
						// copy starts, so that they are the same.
						src = adv8Src{src.name, queuedUnix}
					}
					want := adv8Run(t, src, dst, data, ref)
					got := adv8Run(t, src, dst, data, e.Copy)
					if what := adv8Same(want, got); what != "" {
						t.Errorf("%s differs:\n  pipes   %v\n  io.Copy %v", what, got, want)
					}
					if got.err == nil && want.err != nil {
						t.Errorf("pipes reports success, io.Copy %v", want.err)
					}
				})
			}
		}
	}
}

// queuedUnix is a unix stream socket holding data, its peer closed.
func queuedUnix(t *testing.T, data []byte) (io.Reader, func() (int64, int64)) {
	a, b := unixPair(t)
	t.Cleanup(func() { a.Close() })
	if _, err := b.Write(data); err != nil {
		t.Fatal(err)
	}
	b.Close()
	return a, func() (int64, int64) { return -1, -1 }
}

// statusKeys returns the field names of a /proc/<pid>/status text, in
// order: the values change from one read to the next, the fields not.
func statusKeys(b []byte) []string {
	var keys []string
	for _, line := range strings.Split(string(b), "\n") {
		if k, _, ok := strings.Cut(line, ":"); ok {
			keys = append(keys, k)
		}
	}
	return keys
}

// TestAdv8ProcStatus copies /proc/self/status (size 0 in fstat, read
// in short pieces, its values changing between reads) from its start,
// from an odd offset and under a limit, into every destination kind:
// the count must be the bytes delivered, and the fields those io.Copy
// delivers.
func TestAdv8ProcStatus(t *testing.T) {
	fdtest.Check(t)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, sk := range []string{"pipe", "tcp", "unix", "file", "writer"} {
			for _, c := range []struct{ off, limit int64 }{{0, -1}, {7, -1}, {0, 100}} {
				t.Run(fmt.Sprintf("%s/@%d/N=%d->%s", ec.name, c.off, c.limit, sk), func(t *testing.T) {
					run := func(copy func(io.Writer, io.Reader) (int64, error)) (int64, []byte, error) {
						f := openPath(t, "/proc/self/status", os.O_RDONLY)
						atOffset(t, f, c.off)
						var r io.Reader = f
						if c.limit >= 0 {
							r = &io.LimitedReader{R: f, N: c.limit}
						}
						w, finish := advSink(t, sk)
						n, err := copy(w, r)
						got := finish()
						return n, got, err
					}
					wantN, want, wantErr := run(io.Copy)
					n, got, err := run(e.Copy)
					if err != nil || wantErr != nil || n != int64(len(got)) || wantN != int64(len(want)) {
						t.Fatalf("pipes (%d, %v) delivered %d bytes; io.Copy (%d, %v) %d", n, err, len(got), wantN, wantErr, len(want))
					}
					if c.limit >= 0 && n != wantN {
						t.Errorf("pipes copied %d bytes under the limit, io.Copy %d", n, wantN)
					}
					if !slices.Equal(statusKeys(got), statusKeys(want)) {
						t.Errorf("fields differ:\n  pipes   %q\n  io.Copy %q", statusKeys(got), statusKeys(want))
					}
				})
			}
		}
	}
}

// TestAdv8SourceTruncated truncates a regular file or memfd source under
// a copy into a pipe read slowly (and through a LimitedReader past the
// new size): the copy must end, without error, with a count equal to the
// bytes the pipe's reader got, which are the source's from the copy's
// offset, and with the source's offset just after them.
func TestAdv8SourceTruncated(t *testing.T) {
	fdtest.Check(t)
	const size = 4 << 20
	const start = 4097
	data := fdtest.Random(size)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, mem := range []bool{false, true} {
			for _, limit := range []int64{-1, size} {
				for _, to := range []int64{0, start + 1, 1<<20 + 333} {
					name := "file"
					if mem {
						name = "memfd"
					}
					t.Run(fmt.Sprintf("%s/%s/N=%d/to-%d", ec.name, name, limit, to), func(t *testing.T) {
						var f *os.File
						if mem {
							f = memfd(t, data, 0)
						} else {
							f = fdtest.TempFile(t, data)
						}
						wf := openPath(t, fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_RDWR)
						atOffset(t, f, start)
						var r io.Reader = f
						var lr *io.LimitedReader
						if limit >= 0 {
							lr = &io.LimitedReader{R: f, N: limit}
							r = lr
						}
						w, finish := slowSink(t, "pipe")
						fut := e.CopyAsync(context.Background(), w, r)
						for fut.Written() < 256<<10 && !isDone(fut) {
							time.Sleep(time.Millisecond)
						}
						if err := wf.Truncate(to); err != nil {
							t.Fatal(err)
						}
						n, err := fut.Wait()
						got := finish()
						if err != nil || n != int64(len(got)) {
							t.Errorf("(%d, %v), destination got %d bytes", n, err, len(got))
						}
						if at := firstDiff(got, data, start, to, true); at >= 0 {
							t.Errorf("%d bytes not the source's from %d: first difference at %d", len(got), start, at)
						}
						if pos := fileOff(f); pos != start+n {
							t.Errorf("source offset %d after %d bytes from %d", pos, n, start)
						}
						if lr != nil && lr.N != limit-n {
							t.Errorf("LimitedReader.N = %d after %d bytes, want %d", lr.N, n, limit-n)
						}
					})
				}
			}
		}
	}
}

// TestAdv8CancelOffsets cancels copies from a file at an odd offset,
// under a limit, once they have delivered part of it: into a pipe whose
// reader has stopped (the kernel path) and into another file (io.Copy's
// copy_file_range(2), in rounds). The count must be what the
// destination got, the source's bytes from the offset; the source's
// offset must be just after them (bytes read into the engine's pipe and
// not delivered are put back, docs/design.md "Cancellation"), and so must
// a file destination's, and LimitedReader.N must be the limit less them.
// io.Copy, which cannot be cancelled, would leave a file source's offset
// past the bytes it read and could not write.
func TestAdv8CancelOffsets(t *testing.T) {
	fdtest.Check(t)
	const start = 4097
	data := fdtest.Random(8 << 20)
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, dk := range []string{"pipe", "tcp", "file"} {
			for _, limit := range []int64{-1, 6<<20 + 3} {
				t.Run(fmt.Sprintf("%s/%s/N=%d", ec.name, dk, limit), func(t *testing.T) {
					src := fdtest.TempFile(t, data)
					if dk == "file" {
						// Enough rounds of copy_file_range(2) to cancel
						// between: a sparse file of 512 MiB.
						path := filepath.Join(t.TempDir(), "sparse")
						if err := os.WriteFile(path, data, 0o600); err != nil {
							t.Fatal(err)
						}
						if err := os.Truncate(path, 512<<20); err != nil {
							t.Fatal(err)
						}
						src = openPath(t, path, os.O_RDONLY)
					}
					atOffset(t, src, start)
					var r io.Reader = src
					var lr *io.LimitedReader
					if limit >= 0 {
						lr = &io.LimitedReader{R: src, N: limit}
						r = lr
					}
					var w io.Writer
					var finish func() []byte
					var dstFile *os.File
					if dk == "file" {
						dstFile = openPath(t, filepath.Join(t.TempDir(), "dst"), os.O_RDWR|os.O_CREATE)
						atOffset(t, dstFile, 3)
						w, finish = dstFile, func() []byte { return fdContents(t, dstFile)[3:] }
					} else {
						// Its reader reads nothing until the copy is over.
						cr, cw := advConn(t, dk)
						gate := make(chan struct{})
						rd := make(chan []byte, 1)
						go func() {
							<-gate
							b, _ := io.ReadAll(cr)
							rd <- b
						}()
						t.Cleanup(func() { cw.Close(); cr.Close() })
						w, finish = cw, func() []byte { close(gate); cw.Close(); return <-rd }
					}
					ctx, cancel := context.WithCancel(context.Background())
					fut := e.CopyAsync(ctx, w, r)
					last, same := int64(-1), 0
					for !isDone(fut) && fut.Written() < 64<<20 && same < 200 {
						if n := fut.Written(); n == last && n > 0 {
							same++ // stalled on a destination not read
						} else {
							last, same = n, 0
						}
						time.Sleep(time.Millisecond)
					}
					cancel()
					n, err := fut.Wait()
					got := finish()
					if err != nil && !errors.Is(err, context.Canceled) {
						t.Errorf("(%d, %v), want nil or context.Canceled", n, err)
					}
					if n != int64(len(got)) {
						t.Errorf("(%d, %v), destination got %d bytes", n, err, len(got))
					}
					if !sourceFrom(got, data[start:]) {
						t.Errorf("destination's %d bytes not the source's from %d", len(got), start)
					}
					if pos := fileOff(src); pos != start+n {
						t.Errorf("source offset %d after %d bytes from %d (%v)", pos, n, start, err)
					}
					if dstFile != nil && fileOff(dstFile) != 3+n {
						t.Errorf("destination offset %d after %d bytes from 3", fileOff(dstFile), n)
					}
					if lr != nil && lr.N != limit-n {
						t.Errorf("LimitedReader.N = %d after %d bytes, want %d", lr.N, n, limit-n)
					}
				})
			}
		}
	}
}

// sourceFrom reports whether got is a prefix of head followed by zeros
// (the holes of a sparse source), without building that source.
func sourceFrom(got, head []byte) bool {
	k := min(len(got), len(head))
	if !bytes.Equal(got[:k], head[:k]) {
		return false
	}
	for rest := got[k:]; len(rest) > 0; {
		n := min(len(rest), len(zeroPage))
		if !bytes.Equal(rest[:n], zeroPage[:n]) {
			return false
		}
		rest = rest[n:]
	}
	return true
}

var zeroPage = make([]byte, 1<<20)
