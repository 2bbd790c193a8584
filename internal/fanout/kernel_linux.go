package fanout

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"

	"github.com/pipes-go/pipes/internal/fd"
	"github.com/pipes-go/pipes/splice"
	"golang.org/x/sys/unix"
)

// Kernel is one fan-out in the kernel. The source is spliced, a chunk at
// a time, into the staging pipe; the chunk is duplicated with tee(2) into
// every destination's private pipe; then it is consumed from the staging
// pipe (spliced to /dev/null) and the next chunk is read. Each destination
// has a goroutine that splices its private pipe into it.
//
// tee(2) takes one slot of the output pipe per buffer of the input pipe,
// and cannot resume a short copy (it always starts at the head of its
// input). So a chunk is teed whole into a private pipe only when the pipe
// has a free slot for each of its buffers. The staging pipe has at most
// half the slots of a private pipe; a private pipe that holds no byte of
// the chunk before last (its pending bytes all belong to the last chunk,
// so they use at most that many slots) has room for the next chunk whole
// ("double" mode: a destination drains one chunk while the next waits in
// its pipe). Where the kernel gave a pipe too small for that (per-user
// pipe quota), a chunk is teed into it only when it is empty; no private
// pipe is smaller than the staging pipe.
//
// A fan-out opened with OpenJoinable admits destinations while it runs
// (Join): each joins between two chunks, with a private pipe of the size
// given there.
type Kernel struct {
	ctx   context.Context
	p     Policy
	src   Source
	read  int64 // bytes read from the source
	grant int   // bytes src.Pacer granted and the fan-out has not read
	// markAt is k.read at the last splice from a socket source that
	// answered EAGAIN with input there; -1 before any (spliceIn).
	markAt int64

	// A test's: afterEmptySplice is called with the source's descriptor
	// after a splice from a socket found nothing, before the poll that
	// checks that answer; readMark with each read(2) of the source's
	// bytes through a buffer (spliceIn).
	afterEmptySplice func(fd int)
	readMark         func(n int)

	stage *splice.Pipe
	null  int // /dev/null, write-only: where consumed chunks go
	last  int // length of the last chunk teed

	ds       []*kdest       // admitted; the coordinator's
	joins    *joins[*kdest] // nil: no destination joins after the start
	size     int            // private pipe size asked for a joining destination
	started  bool           // the destinations' goroutines have been started
	progress chan struct{}  // cap 1: a destination delivered bytes or returned
	leaving  leaving        // the destinations' goroutines not returned yet
	final    chan struct{}  // closed once the last chunk is teed
	finalErr error          // the source's error; set before final closes

	// A fan-out that sends (sends): the file's offset at the start, the
	// bytes of it to send (its size then; more if it grows), and how
	// many of those the destinations may send now.
	sending   bool
	base, end int64
	front     atomic.Int64
}

// Source is the descriptor a Kernel fan-out splices from: a regular file
// (read from its offset), or a pipe, fifo or stream socket in
// non-blocking mode (waited for on the netpoller).
type Source struct {
	Conn  syscall.RawConn
	Kind  fd.Kind // fd.KindFile, fd.KindPipe or fd.KindSocket
	Limit int64   // bytes to read at most; < 0: until EOF
	// Pacer, if non-nil, grants the reads of the source, before each,
	// as a copy's pacer does (splice.Pacer): the ring's Warmer, which
	// reads a file's chunks that are not in the page cache in first, so
	// that the fan-out's reads do not wait for the disk on a thread.
	Pacer splice.Pacer
	// Send, for a regular file whose Pacer is such a Warmer, lets the
	// fan-out send each socket destination its bytes from the file
	// with sendfile(2) (see sends).
	Send bool
	// Gate, if non-nil, bounds those calls: each takes a turn of it
	// (the driver's turns for sends from the page cache).
	Gate splice.Gate
}

// Out is how a Kernel fan-out writes a destination's private pipe out.
type Out struct {
	// Conn, if non-nil, is the destination's descriptor, which the
	// private pipe is spliced into: a regular file not in append mode,
	// or a pipe, fifo or stream socket in non-blocking mode. Nil: the
	// pipe is read(2) and the bytes are handed to the destination's
	// Write.
	Conn syscall.RawConn
	Kind fd.Kind
}

// kdest is a destination of a kernel fan-out.
type kdest struct {
	*Dest
	out    Out
	path   path         // how bytes leave the private pipe; only deliver changes it
	pipe   *splice.Pipe // private pipe
	double bool         // pipe holds two chunks (see Kernel)
	teed   atomic.Int64 // bytes teed into pipe (coordinator)
	more   chan struct{}
}

func newKdest(d *Dest, out Out) *kdest {
	p := pathWrite
	if out.Conn != nil {
		p = pathSplice
	}
	return &kdest{Dest: d, out: out, path: p, more: make(chan struct{}, 1)}
}

// path is how a destination's bytes leave its private pipe.
type path uint8

const (
	// pathSplice splices them into out.Conn.
	pathSplice path = iota
	// pathWrite reads them with read(2) and writes them with Write, a
	// Chunk (io.Copy's 32 KiB) at most at a time: for a destination
	// that is not a descriptor splice can write to, or one that
	// refused a splice.
	pathWrite
)

// NewKernel returns a fan-out from src with no destination and no pipe
// yet: see Add and Open, or OpenJoinable. Close releases what it holds.
func NewKernel(ctx context.Context, src Source, p Policy) *Kernel {
	k := &Kernel{
		ctx: ctx, p: p, src: src, markAt: -1,
		null: -1, progress: make(chan struct{}, 1), final: make(chan struct{}),
	}
	k.leaving.noneLeft = p.OnNoneLeft
	return k
}

// Add adds d, written through out, to a fan-out that Open has not yet
// opened.
func (k *Kernel) Add(d *Dest, out Out) {
	k.ds = append(k.ds, newKdest(d, out))
}

// Read returns the bytes read from the source.
func (k *Kernel) Read() int64 { return k.read }

// Open makes the private pipes of the destinations added, asking
// p.Buffer bytes for each, then the staging pipe, sized to the smallest,
// and opens /dev/null; a fan-out that sends (see sends) needs none.
func (k *Kernel) Open() error {
	if k.sends() && k.fileRange() {
		return nil
	}
	minSize := 0
	for _, d := range k.ds {
		p, err := splice.NewPipe(k.p.Buffer)
		if err != nil {
			return err
		}
		d.pipe = p
		if minSize == 0 || p.Size() < minSize {
			minSize = p.Size()
		}
	}
	if err := k.openStage(minSize); err != nil {
		return err
	}
	for _, d := range k.ds {
		d.double = 2*k.stage.Size() <= d.pipe.Size()
	}
	return nil
}

// OpenJoinable prepares a fan-out that destinations join while it runs
// (Join): it makes the staging pipe for private pipes of size bytes, and
// opens /dev/null. While no destination is left, w watches the source.
func (k *Kernel) OpenJoinable(size int, w Watch) error {
	k.size = size
	k.joins = newJoins[*kdest](w)
	k.leaving.noneLeft = nil // destinations may still join
	return k.openStage(size)
}

// openStage makes the staging pipe, half the size of a private pipe of
// size bytes (at least a page), and opens /dev/null.
func (k *Kernel) openStage(size int) error {
	stage, err := splice.NewPipe(max(size/2, os.Getpagesize()))
	if err != nil {
		return err
	}
	k.stage = stage
	if stage.Size() > size {
		return errors.New("pipes: fan-out: staging pipe larger than a private pipe")
	}
	null, err := unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: "/dev/null", Err: err}
	}
	k.null = null
	return nil
}

// Join makes d's private pipe and queues d, written through out, for
// admission into a fan-out opened with OpenJoinable. It fails if no pipe
// of at least one chunk can be had (per-user pipe quota), and with
// ErrEnded once the fan-out has ended. It may run concurrently with the
// coordinator.
func (k *Kernel) Join(d *Dest, out Out) error {
	kd := newKdest(d, out)
	chunk := k.stage.Size()
	p, err := splice.NewPipe(k.size)
	if err == nil && p.Size() < chunk {
		// Refused (pipe-max-size, quota): one chunk is enough to go on.
		p.Close()
		p, err = splice.NewPipe(chunk)
	}
	if err != nil {
		return err
	}
	if p.Size() < chunk {
		p.Close()
		return fmt.Errorf("pipes: fan-out: the kernel gave a %d-byte private pipe for %d-byte chunks (per-user pipe quota, /proc/sys/fs/pipe-user-pages-soft)", p.Size(), chunk)
	}
	kd.pipe, kd.double = p, 2*chunk <= p.Size()
	if !k.joins.add(kd) {
		p.Close()
		return ErrEnded
	}
	return nil
}

// abandonJoins ends admissions and abandons the destinations added and
// never admitted.
func (k *Kernel) abandonJoins() {
	for _, d := range k.joins.close() {
		d.pipe.Close()
		d.abandon()
	}
}

// abandonUnstarted is settle's abandon for a Kernel: it abandons the
// destinations that joined and were never admitted, and, where the
// coordinator panics before it started the destinations' goroutines,
// the destinations too, so that settle does not wait for goroutines that
// never ran.
func (k *Kernel) abandonUnstarted() {
	k.abandonJoins()
	if !k.started {
		for _, d := range k.ds {
			d.abandon()
		}
	}
}

// Close releases the pipes and /dev/null once Run has returned, or in
// place of running it.
func (k *Kernel) Close() {
	k.abandonJoins()
	for _, d := range k.ds {
		d.pipe.Close()
	}
	k.stage.Close()
	if k.null >= 0 {
		unix.Close(k.null)
		k.null = -1
	}
}

// admit drops the destinations that left, closing their private pipes,
// and admits those that joined.
func (k *Kernel) admit() {
	k.ds = pruneExited(k.ds, func(d *kdest) { d.pipe.Close() })
	for _, d := range k.joins.take() {
		k.ds = append(k.ds, d)
		if k.started {
			k.leaving.expect(1)
			go k.deliver(d)
		}
	}
}

// start starts the goroutines of the destinations, once.
func (k *Kernel) start() {
	if !k.started {
		k.started = true
		k.leaving.expect(len(k.ds))
		for _, d := range k.ds {
			go k.deliver(d)
		}
	}
}

// Run is the coordinator. It returns false, having started nothing, if
// the first splice from the source says the kernel cannot splice it (only
// in a fan-out without joins: one with joins reports that as the source's
// error). Else it returns when every destination is done, with the
// fan-out's outcome: nil when the source reached EOF or the limit (or no
// destination was left, unless Policy.OnNoneLeft ended ctx for that
// first), the source's error, or an error wrapping ctx.Err() when ctx
// ended first. The caller interrupts a read of the source blocked when
// ctx ends.
//
// A panic of a destination's Write stops every destination and is raised
// again in Run's goroutine (settle).
func (k *Kernel) Run() (handled bool, err error) {
	returned := false
	defer func() { settle(&k.ds, k.abandonUnstarted, recover(), returned) }()
	handled, err = k.run()
	returned = true
	return handled, err
}

// run is Run's work, under settle.
func (k *Kernel) run() (handled bool, err error) {
	if k.sending {
		return true, k.runSends()
	}
	handled = k.readAll()
	if !handled {
		return false, nil
	}
	k.abandonJoins()
	k.start()
	ds := bases(k.ds)
	if k.ctx.Err() != nil {
		stopAll(ds, ctxError(k.ctx))
		return true, ctxError(k.ctx)
	}
	close(k.final)
	if !awaitAll(k.ctx, ds, k.progress, k.p) {
		return true, ctxError(k.ctx)
	}
	return true, k.finalErr
}

// readAll reads the source a chunk at a time and tees each chunk to the
// destinations, until the source ends, no destination is left (in a
// fan-out without joins), or ctx ends; a read error is left in finalErr.
// It returns false, having read nothing, if the kernel refuses to splice
// the source.
func (k *Kernel) readAll() bool {
	defer k.refund()
	for k.ctx.Err() == nil && (k.src.Limit < 0 || k.read < k.src.Limit) {
		k.admit()
		if live(k.ds) == 0 {
			more, err := k.joins.await(k.ctx)
			if !more {
				if err != nil && k.ctx.Err() == nil {
					k.finalErr = fmt.Errorf("pipes: fan-out: reading the source: %w", err)
				}
				break
			}
			continue
		}
		if k.started && !k.leaving.beginRead() {
			break // the last destination left while none was read
		}
		n, eof, idle, err := k.fill()
		if k.started {
			k.leaving.endRead()
		}
		if idle {
			continue
		}
		if err != nil {
			if k.read == 0 && fd.Refused(err) && k.joins == nil {
				return false
			}
			if k.ctx.Err() == nil {
				k.finalErr = fmt.Errorf("pipes: fan-out: reading the source: %w", err)
			}
			break
		}
		k.start()
		if eof {
			break
		}
		k.read += int64(n)
		k.admit() // those added while fill waited get this chunk
		if k.distribute(n) != nil {
			break
		}
		if err := k.discard(n); err != nil {
			k.finalErr = err
			break
		}
	}
	return true
}

// readable reports whether the socket fd has input now (poll(2), no wait).
func readable(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}

// fill splices the next chunk from the source into the empty staging
// pipe, waiting on the netpoller for input. In a fan-out with joins, idle
// reports that no destination was left when input came: nothing is read
// then, so that bytes are read only for a destination that receives them.
func (k *Kernel) fill() (n int, eof, idle bool, err error) {
	chunk := k.stage.Size()
	if k.src.Limit >= 0 {
		chunk = int(min(int64(chunk), k.src.Limit-k.read))
	}
	if chunk, err = k.pace(chunk); err != nil {
		return 0, false, false, err
	}
	rerr := k.src.Conn.Read(func(sysfd uintptr) bool {
		if k.joins != nil && live(k.ds) == 0 {
			idle = true
			return true
		}
		var wait bool
		n, eof, wait, err = k.spliceIn(int(sysfd), chunk)
		return !wait
	})
	if rerr != nil && err == nil {
		err = fd.ClosedErr(rerr, k.src.Conn, nil)
	}
	if k.src.Pacer != nil {
		k.grant -= n
	}
	return n, eof, idle, err
}

// pacerGrant is how much a fan-out asks its source's Pacer for at once:
// a Warmer probes the page cache once per grant, however many chunks of
// the staging pipe's size the grant spans.
const pacerGrant = 4 << 20

// pace bounds the next read, of at most chunk bytes, by what the
// source's Pacer granted, and asks for more when all of it was read.
func (k *Kernel) pace(chunk int) (int, error) {
	if k.src.Pacer == nil {
		return chunk, nil
	}
	if k.grant == 0 {
		most := int64(pacerGrant)
		if k.src.Limit >= 0 {
			most = min(most, k.src.Limit-k.read)
		}
		g, err := k.src.Pacer.Take(k.ctx, int(most))
		if err != nil && k.ctx.Err() != nil {
			return 0, ctxError(k.ctx)
		}
		if err != nil {
			return 0, err
		}
		k.grant = g
	}
	return min(chunk, k.grant), nil
}

// refund gives back what the source's Pacer granted and the fan-out did
// not read.
func (k *Kernel) refund() {
	if k.src.Pacer != nil && k.grant > 0 {
		k.src.Pacer.Refund(k.grant)
		k.grant = 0
	}
}

// errSplicesEmpty is spliceIn's answer for a regular-file source that
// splice(2) finds at its end before anything was read, while read(2)
// has bytes of it (fd.ReadsMore: a file whose size is reported as 0):
// a refusal (it matches EINVAL, fd.Refused), so that the fan-out reads
// it in userspace, as io.Copy does.
var errSplicesEmpty = fmt.Errorf("splice(2) finds the file empty, read(2) does not: %w", unix.EINVAL)

// spliceIn splices up to chunk bytes from the source's descriptor into
// the staging pipe, without waiting: wait reports that the source has no
// input yet.
//
// A socket source that answers EAGAIN although it is readable either got
// its input after the splice, or is at TCP's urgent mark: the fan-out
// splices again, and takes EAGAIN with input there again, with nothing
// read in between, for the mark.
func (k *Kernel) spliceIn(sysfd, chunk int) (n int, eof, wait bool, err error) {
	m, e := splice.Splice(sysfd, nil, k.stage.WriteFd(), nil, chunk, splice.FlagMove|splice.FlagNonblock)
	input := false // EAGAIN, yet the socket is readable
	if m <= 0 && e == unix.EAGAIN && k.src.Kind == fd.KindSocket {
		if k.afterEmptySplice != nil {
			k.afterEmptySplice(sysfd)
		}
		if input = readable(sysfd); input && k.markAt != k.read {
			k.markAt = k.read
			m, e = splice.Splice(sysfd, nil, k.stage.WriteFd(), nil, chunk, splice.FlagMove|splice.FlagNonblock)
			input = m <= 0 && e == unix.EAGAIN && readable(sysfd)
		}
	}
	switch {
	case m > 0:
		return m, false, false, nil
	case k.src.Kind == fd.KindSocket && (e == nil || input):
		// EOF, or TCP's urgent mark, where splice answers 0 (or EAGAIN
		// although the socket is readable): read(2) tells them apart
		// and steps over the urgent byte.
		m, e = splice.ReadMark(sysfd, k.stage.WriteFd(), chunk)
		if k.readMark != nil && m > 0 {
			k.readMark(m)
		}
		switch {
		case m > 0:
			return m, false, false, nil
		case e == nil:
			return 0, true, false, nil
		case e == unix.EAGAIN && k.ctx.Err() == nil:
			return 0, false, true, nil
		}
		return 0, false, false, os.NewSyscallError("read", e)
	case e == nil && k.src.Kind == fd.KindFile && k.read == 0 && fd.ReadsMore(sysfd):
		return 0, false, false, errSplicesEmpty
	case e == nil:
		return 0, true, false, nil
	case e == unix.EAGAIN && k.src.Kind != fd.KindFile && k.ctx.Err() == nil:
		return 0, false, true, nil // the staging pipe is empty: the source has no input yet
	}
	return 0, false, false, os.NewSyscallError("splice", e)
}
