package pipes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/pipes-go/pipes/internal/fd"
	"github.com/pipes-go/pipes/splice"
	"golang.org/x/sys/unix"
)

// kfan is one fan-out in the kernel. The source is spliced, a chunk at a
// time, into the staging pipe; the chunk is duplicated with tee(2) into
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
// A fan-out opened with openJoinable admits destinations while it runs
// (fanJoins): each joins between two chunks, with a private pipe of the
// size given there.
type kfan struct {
	ctx         context.Context
	cfg         *fanOutConfig
	src         endpoint
	srcPollable bool
	limit       int64 // < 0: none
	read        int64 // bytes read from the source

	stage *splice.Pipe
	null  int // /dev/null, write-only: where consumed chunks go
	last  int // length of the last chunk teed

	ds       []*kdest          // admitted; the coordinator's
	joins    *fanJoins[*kdest] // nil: no destination joins after the start
	size     int               // private pipe size asked for a joining destination
	started  bool              // the destinations' goroutines have been started
	progress chan struct{}     // cap 1: a destination delivered bytes or returned
	final    chan struct{}     // closed once the last chunk is teed
	finalErr error             // the source's error; set before final closes
}

// kdest is a destination of a kernel fan-out.
type kdest struct {
	*fanDest
	ep     endpoint
	splice bool         // splice into the destination; else read(2) the private pipe and Write
	pipe   *splice.Pipe // private pipe
	double bool         // pipe holds two chunks (see kfan)
	teed   atomic.Int64 // bytes teed into pipe (coordinator)
	more   chan struct{}
}

// fanOutKernel runs the fan-out with splice(2) and tee(2), and then
// returns inKernel. Where it cannot it reads nothing and returns why: the
// source cannot be spliced (no descriptor, a blocking pipe or socket, a
// device) or no destination can be spliced into (fallbackNoFD); pipes
// cannot be had, or the kernel refuses the source (fallbackRefused). The
// caller then fans out through userspace.
func (e *Engine) fanOutKernel(ctx context.Context, src io.Reader, limit int64, ds []*fanDest, cfg *fanOutConfig) (read int64, why fallback) {
	se, ok := readerEndpoint(src)
	if !ok {
		return 0, fallbackNoFD
	}
	nonblock := se.info.Flags&unix.O_NONBLOCK != 0
	switch {
	case se.kind == kindFile:
	case (se.kind == kindPipe || se.kind == kindSocket) && nonblock:
	default:
		return 0, fallbackNoFD
	}
	k := newKfan(ctx, cfg, se, limit)
	anySplice := false
	for _, d := range ds {
		kd := newKdest(d)
		anySplice = anySplice || kd.splice
		k.ds = append(k.ds, kd)
	}
	if !anySplice {
		return 0, fallbackNoFD
	}
	defer k.close()
	if err := k.openPipes(cfg.bufferFor(len(ds))); err != nil {
		return 0, fallbackRefused
	}
	if pr, ok := src.(*PipeReader); ok {
		// A read-only fifo that has had no writer yet reads as EOF:
		// wait for its first writer, as Copy does. An error here
		// recurs at the first read.
		stop := interruptOnDone(ctx, nil, pr)
		pr.awaitFirstWriter()
		stop()
	}
	if handled, _ := k.run(src); !handled {
		return k.read, fallbackRefused
	}
	e.stats.spliceLoop.Add(1)
	return k.read, inKernel
}

// newKfan returns a fan-out from src, a spliceable source, with no
// destination and no pipe yet: see openPipes and openJoinable.
func newKfan(ctx context.Context, cfg *fanOutConfig, src endpoint, limit int64) *kfan {
	return &kfan{
		ctx: ctx, cfg: cfg, src: src, srcPollable: src.kind != kindFile, limit: limit,
		null: -1, progress: make(chan struct{}, 1), final: make(chan struct{}),
	}
}

// newKdest classifies the destination d for a kernel fan-out.
func newKdest(d *fanDest) *kdest {
	kd := &kdest{fanDest: d, more: make(chan struct{}, 1)}
	if ep, ok := writerEndpoint(d.w); ok && spliceableDst(ep) {
		kd.ep, kd.splice = ep, true
	}
	return kd
}

// spliceableDst reports destinations the private pipe is spliced into:
// regular files not in append mode (splice refuses O_APPEND), and pipes,
// fifos and stream sockets in non-blocking mode (waited for on the
// netpoller). Others are written with Write.
func spliceableDst(ep endpoint) bool {
	switch ep.kind {
	case kindFile:
		return ep.info.Flags&unix.O_APPEND == 0
	case kindPipe, kindSocket:
		return ep.info.Flags&unix.O_NONBLOCK != 0
	}
	return false
}

// openPipes makes the private pipes of the destinations, asking size
// bytes for each, then the staging pipe, sized to the smallest, and
// /dev/null.
func (k *kfan) openPipes(size int) error {
	minSize := 0
	for _, d := range k.ds {
		p, err := splice.NewPipe(size)
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

// openJoinable prepares a fan-out that destinations join while it runs
// (join): it makes the staging pipe for private pipes of size bytes, and
// opens /dev/null.
func (k *kfan) openJoinable(size int) error {
	k.size = size
	k.joins = newFanJoins[*kdest]()
	return k.openStage(size)
}

// openStage makes the staging pipe, half the size of a private pipe of
// size bytes (at least a page), and opens /dev/null.
func (k *kfan) openStage(size int) error {
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

// join makes d's private pipe and queues d for admission into a fan-out
// opened with openJoinable. It fails if no pipe of at least one chunk can
// be had (per-user pipe quota), and with errFanOutEnded once the fan-out
// has ended. It may run concurrently with the coordinator.
func (k *kfan) join(d *fanDest) error {
	kd := newKdest(d)
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
		return errFanOutEnded
	}
	return nil
}

// abandonJoins ends admissions and abandons the destinations added and
// never admitted.
func (k *kfan) abandonJoins() {
	for _, d := range k.joins.close() {
		d.pipe.Close()
		d.abandon()
	}
}

// close releases the pipes and /dev/null once the coordinator has
// returned, or in place of running it.
func (k *kfan) close() {
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
func (k *kfan) admit() {
	k.ds = pruneExited(k.ds, func(d *kdest) { d.pipe.Close() })
	for _, d := range k.joins.take() {
		k.ds = append(k.ds, d)
		if k.started {
			go k.deliver(d)
		}
	}
}

// start starts the goroutines of the destinations, once.
func (k *kfan) start() {
	if !k.started {
		k.started = true
		for _, d := range k.ds {
			go k.deliver(d)
		}
	}
}

// run is the coordinator. It returns false, having started nothing, if
// the first splice from the source says the kernel cannot splice it (only
// in a fan-out without joins: one with joins reports that as the source's
// error). Else it returns when every destination is done, with the
// fan-out's outcome: nil when the source reached EOF or the limit (or no
// destination was left), the source's error, or fanOutCtxError when ctx
// ended first.
func (k *kfan) run(src io.Reader) (handled bool, err error) {
	stopRead := interruptOnDone(k.ctx, nil, src)
	defer stopRead()
	for k.ctx.Err() == nil && (k.limit < 0 || k.read < k.limit) {
		k.admit()
		if live(k.ds) == 0 {
			if !k.joins.await(k.ctx) {
				break
			}
			continue
		}
		n, eof, idle, err := k.fill()
		if idle {
			continue
		}
		if err != nil {
			if k.read == 0 && fd.Refused(err) && k.joins == nil {
				return false, nil
			}
			if k.ctx.Err() != nil {
				break
			}
			k.finalErr = fmt.Errorf("pipes: fan-out: reading the source: %w", err)
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
	k.abandonJoins()
	k.start()
	ds := bases(k.ds)
	if k.ctx.Err() != nil {
		stopAll(ds, fanOutCtxError(k.ctx))
		return true, fanOutCtxError(k.ctx)
	}
	close(k.final)
	if !awaitAll(k.ctx, ds, k.progress, k.cfg) {
		return true, fanOutCtxError(k.ctx)
	}
	return true, k.finalErr
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
func (k *kfan) fill() (n int, eof, idle bool, err error) {
	chunk := k.stage.Size()
	if k.limit >= 0 {
		chunk = int(min(int64(chunk), k.limit-k.read))
	}
	rerr := k.src.conn.Read(func(fd uintptr) bool {
		if k.joins != nil && live(k.ds) == 0 {
			idle = true
			return true
		}
		m, e := splice.Splice(int(fd), nil, k.stage.WriteFd(), nil, chunk, splice.FlagMove|splice.FlagNonblock)
		switch {
		case m > 0:
			n = m
		case k.src.kind == kindSocket && (e == nil || e == unix.EAGAIN && readable(int(fd))):
			// EOF, or TCP's urgent mark, where splice answers 0 (or
			// EAGAIN although the socket is readable): read(2) tells
			// them apart and steps over the urgent byte.
			m, e = splice.ReadMark(int(fd), k.stage.WriteFd(), chunk)
			switch {
			case m > 0:
				n = m
			case e == nil:
				eof = true
			case e == unix.EAGAIN && k.ctx.Err() == nil:
				return false
			default:
				err = os.NewSyscallError("read", e)
			}
		case e == nil:
			eof = true
		case e == unix.EAGAIN && k.srcPollable && k.ctx.Err() == nil:
			return false // the staging pipe is empty: the source has no input yet
		default:
			err = os.NewSyscallError("splice", e)
		}
		return true
	})
	if rerr != nil && err == nil {
		err = rerr
	}
	return n, eof, idle, err
}

// ready reports whether d's private pipe has room for the next chunk.
func (k *kfan) ready(d *kdest) bool {
	pending := d.teed.Load() - d.written.Load()
	if d.double {
		return pending <= int64(k.last)
	}
	return pending == 0
}

// distribute tees the chunk of n bytes in the staging pipe into every
// destination still in the copy, as each has room, applying the eviction
// policy to those that have none. It fails only when ctx ends.
func (k *kfan) distribute(n int) error {
	var pending []*kdest
	for _, d := range k.ds {
		if !d.exited() && !d.quitting() {
			pending = append(pending, d)
		}
	}
	var deadline <-chan time.Time
	if k.cfg.evictAfter > 0 {
		t := time.NewTimer(k.cfg.evictAfter)
		defer t.Stop()
		deadline = t.C
	}
	for {
		rest := pending[:0]
		for _, d := range pending {
			if d.exited() || d.quitting() {
				continue
			}
			if !k.ready(d) {
				rest = append(rest, d)
				continue
			}
			m, e := splice.Tee(k.stage.ReadFd(), d.pipe.WriteFd(), n, splice.FlagNonblock)
			if m != n {
				// Cannot happen while the slot arithmetic holds.
				if e == nil {
					e = io.ErrShortWrite
				}
				d.stop(fmt.Errorf("pipes: fan-out to destination %d: tee gave %d of %d bytes: %w", d.idx, m, n, os.NewSyscallError("tee", e)))
				continue
			}
			d.teed.Add(int64(n))
			kick(d.more)
		}
		pending = rest
		if len(pending) == 0 {
			break
		}
		select {
		case <-k.progress:
		case <-k.ctx.Done():
			return k.ctx.Err()
		case <-deadline:
			deadline = nil
			for _, d := range pending {
				if !k.ready(d) {
					d.stop(evictedError(d.idx, k.cfg.evictAfter))
				}
			}
		}
	}
	k.last = n
	return nil
}

// discard consumes the chunk of n bytes from the staging pipe.
func (k *kfan) discard(n int) error {
	for n > 0 {
		m, err := splice.Splice(k.stage.ReadFd(), nil, k.null, nil, n, splice.FlagNonblock)
		if m <= 0 {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("pipes: fan-out: consuming the staging pipe: %w", os.NewSyscallError("splice", err))
		}
		n -= m
	}
	return nil
}

// deliver is a destination's goroutine: it moves what is teed into its
// private pipe on into the destination until the source has ended and
// the pipe is empty, the destination fails, or it is stopped.
func (k *kfan) deliver(d *kdest) {
	defer func() {
		close(d.done) // before the kick: the coordinator checks done when woken
		kick(k.progress)
	}()
	var buf []byte
	for {
		if d.quitting() {
			d.err = d.reason
			return
		}
		avail := d.teed.Load() - d.written.Load()
		if avail == 0 {
			select {
			case <-d.more:
			case <-d.quit:
			case <-k.final:
				if d.teed.Load() == d.written.Load() {
					d.err = k.finalErr
					return
				}
			}
			continue
		}
		var err error
		if d.splice {
			err = k.spliceOut(d, int(avail))
			if err != nil && d.written.Load() == 0 && fd.Refused(err) {
				d.splice = false // the kernel refuses this destination: Write it
				continue
			}
		} else {
			buf, err = k.writeOut(d, int(avail), buf)
		}
		if err != nil {
			d.err = d.failed(err)
			return
		}
	}
}

// spliceOut splices n bytes from d's private pipe into d, waiting on the
// netpoller while d has no room.
func (k *kfan) spliceOut(d *kdest, n int) error {
	var serr error
	werr := d.ep.conn.Write(func(fd uintptr) bool {
		for n > 0 {
			m, e := splice.Splice(d.pipe.ReadFd(), nil, int(fd), nil, n, splice.FlagMove|splice.FlagNonblock)
			if m > 0 {
				n -= m
				d.written.Add(int64(m))
				kick(k.progress)
				continue
			}
			switch {
			case e == unix.EAGAIN && d.ep.kind != kindFile:
				// The private pipe holds n bytes, so d has no room.
				return d.quitting()
			case e == nil:
				serr = io.ErrUnexpectedEOF // the private pipe lost bytes: a bug
			default:
				serr = os.NewSyscallError("splice", e)
			}
			return true
		}
		return true
	})
	if werr != nil {
		return werr
	}
	return serr
}

// writeOut reads up to n bytes from d's private pipe and writes them with
// d's Write, for destinations splice cannot write to.
func (k *kfan) writeOut(d *kdest, n int, buf []byte) ([]byte, error) {
	if buf == nil {
		buf = make([]byte, fanOutChunk)
	}
	var m int
	var err error
	for {
		m, err = unix.Read(d.pipe.ReadFd(), buf[:min(n, len(buf))])
		if err != unix.EINTR {
			break
		}
	}
	if m <= 0 {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return buf, os.NewSyscallError("read", err)
	}
	w, err := d.w.Write(buf[:m])
	d.written.Add(int64(w))
	kick(k.progress)
	if err == nil && w < m {
		err = io.ErrShortWrite
	}
	return buf, err
}
