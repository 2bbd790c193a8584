package fanout

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pipes-go/pipes/internal/fd"
	"github.com/pipes-go/pipes/splice"
	"golang.org/x/sys/unix"
)

// The destinations' side of a Kernel fan-out: teeing a chunk into the
// private pipes, and each destination's goroutine moving its pipe on.

// ready reports whether d's private pipe has room for the next chunk.
func (k *Kernel) ready(d *kdest) bool {
	pending := d.teed.Load() - d.written.Load()
	if d.double {
		return pending <= int64(k.last)
	}
	return pending == 0
}

// distribute tees the chunk of n bytes in the staging pipe into every
// destination still in the copy, as each has room, applying the eviction
// policy to those that have none. It fails only when ctx ends.
func (k *Kernel) distribute(n int) error {
	var pending []*kdest
	for _, d := range k.ds {
		if d.state() == running {
			pending = append(pending, d)
		}
	}
	var deadline <-chan time.Time
	if k.p.EvictAfter > 0 {
		t := time.NewTimer(k.p.EvictAfter)
		defer t.Stop()
		deadline = t.C
	}
	for {
		rest := pending[:0]
		for _, d := range pending {
			switch {
			case d.state() != running:
			case !k.ready(d):
				rest = append(rest, d)
			default:
				k.tee(d, n)
			}
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
					d.stop(d.evicted(k.p.EvictAfter))
				}
			}
		}
	}
	k.last = n
	return nil
}

// tee duplicates the chunk of n bytes in the staging pipe into d's
// private pipe, which has room for it, and wakes d's goroutine.
func (k *Kernel) tee(d *kdest, n int) {
	m, e := splice.Tee(k.stage.ReadFd(), d.pipe.WriteFd(), n, splice.FlagNonblock)
	if m != n {
		// Cannot happen while the slot arithmetic holds.
		if e == nil {
			e = io.ErrShortWrite
		}
		d.stop(fmt.Errorf("pipes: fan-out to destination %d: tee gave %d of %d bytes: %w", d.idx, m, n, os.NewSyscallError("tee", e)))
		return
	}
	d.teed.Add(int64(n))
	kick(d.more)
}

// discard consumes the chunk of n bytes from the staging pipe.
func (k *Kernel) discard(n int) error {
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
func (k *Kernel) deliver(d *kdest) {
	d.begin()
	defer k.leaving.leave()
	defer d.exit(k.progress)
	if k.sending {
		d.run(k.p.OnPanic, func() { k.sendLoop(d) })
		return
	}
	d.run(k.p.OnPanic, func() { k.deliverLoop(d) })
}

// deliverLoop is deliver's work, run by Dest.run.
func (k *Kernel) deliverLoop(d *kdest) {
	var buf []byte
	for {
		if d.stopped() {
			d.err = d.reason()
			return
		}
		avail := d.teed.Load() - d.written.Load()
		if avail == 0 {
			select {
			case <-d.more:
			case <-d.life.Done():
			case <-k.final:
				if d.teed.Load() == d.written.Load() {
					d.err = k.finalErr
					return
				}
			}
			continue
		}
		var err error
		switch d.path {
		case pathSplice:
			err = k.spliceOut(d, int(avail))
			if err != nil && fd.Refused(err) {
				// The kernel refuses this destination, at once or for
				// pages it cannot take (an O_DIRECT file's, unaligned):
				// a refused splice moves nothing, so the bytes are still
				// in the private pipe. Write them, and the rest, in
				// io.Copy's sizes (Chunk).
				d.path = pathWrite
				continue
			}
		case pathWrite:
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
func (k *Kernel) spliceOut(d *kdest, n int) error {
	var serr error
	werr := d.out.Conn.Write(func(sysfd uintptr) bool {
		for n > 0 {
			m, e := splice.Splice(d.pipe.ReadFd(), nil, int(sysfd), nil, n, splice.FlagMove|splice.FlagNonblock)
			if m > 0 {
				n -= m
				d.written.Add(int64(m))
				kick(k.progress)
				continue
			}
			switch {
			case e == unix.EAGAIN && d.out.Kind != fd.KindFile:
				// The private pipe holds n bytes, so d has no room.
				return d.stopped()
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
		return fd.ClosedErr(werr, d.out.Conn, nil)
	}
	return serr
}

// writeOut reads up to n bytes, a Chunk at most, from d's private pipe
// and writes them with d's Write, for destinations splice cannot write
// to.
func (k *Kernel) writeOut(d *kdest, n int, buf []byte) ([]byte, error) {
	if buf == nil {
		buf = make([]byte, Chunk)
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
	w, err = wrote(w, m, err)
	d.written.Add(int64(w))
	kick(k.progress)
	return buf, err
}
