package fanout

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pipes-go/pipes/internal/fd"
	"golang.org/x/sys/unix"
)

// A Kernel fan-out from a regular file into sockets, whose chunks the
// ring's Warmer reads in (Source.Send), with the default buffer, sends
// each destination its bytes from the file itself, with sendfile(2) at
// the destination's own offset, instead of teeing chunks into private
// pipes. The file is read from the disk once all the same: the Warmer
// reads each chunk in before the coordinator lets the destinations send
// it (the front). The destinations do not move in step: the front runs
// up to sendWindow ahead of the slowest one, and each sends up to 4 MiB
// a call, as io.Copy's sendfile(2) does, under a turn of the driver's
// turns for sends from the page cache (Source.Gate) until it first
// waits for room, as a copy's sends of a cached grant take them. Teeing, chunk by chunk, the destinations
// moved in step, and a fan-out into many sockets ran behind one io.Copy
// per destination at twice its CPU (docs/benchmarks.md, "A fan-out that
// sends from the file").

// sendWindow is how far the fastest destination of a fan-out that sends
// may run ahead of the slowest: no pipe holds those bytes (they are the
// file's pages), so it can be wider than a private pipe.
const sendWindow = 16 << 20

// maxSend bounds one sendfile(2) call, as Go's own sendfile does.
const maxSend = 4 << 20

// sends reports whether the fan-out sends from the file (see above):
// a regular-file source whose Warmer reads it in, the default buffer, no
// joins, and only socket destinations spliced into.
func (k *Kernel) sends() bool {
	if !k.src.Send || k.src.Kind != fd.KindFile || !k.p.BufferDefault || k.joins != nil || len(k.ds) == 0 {
		return false
	}
	for _, d := range k.ds {
		if d.out.Conn == nil || d.out.Kind != fd.KindSocket {
			return false
		}
	}
	return true
}

// fileRange reads the source file's offset and size into base and end,
// and reports whether it has bytes there by its size: then the fan-out
// sends (sending). A file whose size says nothing is left (or that
// splices as empty while read(2) has bytes: a FUSE file of direct I/O)
// is read by readAll instead, through the pipes Open makes.
func (k *Kernel) fileRange() bool {
	var st unix.Stat_t
	var flags int
	var err error
	cerr := k.src.Conn.Control(func(sysfd uintptr) {
		if k.base, err = unix.Seek(int(sysfd), 0, io.SeekCurrent); err == nil {
			err = unix.Fstat(int(sysfd), &st)
		}
		if err == nil {
			flags, err = unix.FcntlInt(sysfd, unix.F_GETFL, 0)
		}
	})
	if cerr != nil || err != nil || st.Size <= k.base || flags&unix.O_ACCMODE == unix.O_WRONLY {
		// A file not open for reading fails in readAll's read, with
		// the error of the source's, not of each destination's.
		return false
	}
	k.end = st.Size - k.base
	if k.src.Limit >= 0 {
		k.end = min(k.end, k.src.Limit)
	}
	k.sending = k.end > 0
	return k.sending
}

// runSends is run for a fan-out that sends. The coordinator moves the
// front ahead, in the Warmer's grants, up to sendWindow past the slowest
// destination, a chunk (sendChunk) at least; with EvictAfter, a
// destination that has had no room for the next chunk that long is
// evicted, as it is where the fan-out tees: a destination that takes a
// few bytes now and then does not keep the others at its pace. Once the
// front has reached the file's end (its size, checked again before each
// grant: the file may have grown or been truncated) it waits for the
// destinations, as after a source's EOF, and leaves the file's offset
// after the bytes sent, as io.Copy leaves it.
func (k *Kernel) runSends() error {
	k.start()
	defer func() {
		// The bytes that left the file: the front, where every
		// destination sent all of it; else what the furthest sent,
		// not the front, up to sendWindow past it, which nothing read.
		k.read = 0
		for _, d := range k.ds {
			k.read = max(k.read, d.written.Load())
		}
		k.src.Conn.Control(func(sysfd uintptr) {
			unix.Seek(int(sysfd), k.base+k.read, io.SeekStart)
		})
	}()
	var evict *time.Timer
	defer func() {
		if evict != nil {
			evict.Stop()
		}
	}()
	for k.ctx.Err() == nil && live(k.ds) > 0 {
		front := k.front.Load()
		slow := k.slowest()
		need := min(k.end-front, k.sendChunk())
		if room := slow + sendWindow - front; front < k.end && room < need {
			if evict == nil && k.p.EvictAfter > 0 {
				evict = time.NewTimer(k.p.EvictAfter)
			}
			if !k.awaitSlowest(evict, front, need) {
				evict = nil
			}
			continue
		}
		if evict != nil {
			evict.Stop()
			evict = nil
		}
		if k.resize(front); front == k.end {
			break
		}
		if err := k.advance(min(k.end-front, slow+sendWindow-front, pacerGrant)); err != nil {
			k.finalErr = err
			break
		}
	}
	ds := bases(k.ds)
	if k.ctx.Err() != nil {
		stopAll(ds, ctxError(k.ctx))
		return ctxError(k.ctx)
	}
	close(k.final)
	for _, d := range k.ds {
		kick(d.more)
	}
	if !awaitAll(k.ctx, ds, k.progress, k.p) {
		return ctxError(k.ctx)
	}
	return k.finalErr
}

// advance lets the destinations send n bytes more, once the Warmer has
// granted them (read them in), and wakes them.
func (k *Kernel) advance(n int64) error {
	if k.src.Pacer != nil {
		g, err := k.src.Pacer.Take(k.ctx, int(n))
		switch {
		case err != nil && k.ctx.Err() != nil:
			return nil // the loop ends on ctx
		case err != nil:
			return fmt.Errorf("pipes: fan-out: reading the source: %w", err)
		}
		n = int64(g)
	}
	k.front.Add(n)
	for _, d := range k.ds {
		kick(d.more)
	}
	return nil
}

// sendChunk is the least room the slowest destination must have, within
// sendWindow, for the front to move: the chunk a teeing fan-out with the
// same Policy would tee (half the buffer, a page at least), so that
// EvictAfter evicts the same destinations.
func (k *Kernel) sendChunk() int64 {
	return int64(min(max(k.p.Buffer/2, os.Getpagesize()), pacerGrant))
}

// awaitSlowest waits for a destination's progress while the slowest has
// no room for the next need bytes within sendWindow, or for ctx. When
// evict fires first, it evicts the destinations that have none, and
// reports false: the timer is spent.
func (k *Kernel) awaitSlowest(evict *time.Timer, front, need int64) bool {
	var fire <-chan time.Time
	if evict != nil {
		fire = evict.C
	}
	select {
	case <-k.progress:
	case <-k.ctx.Done():
	case <-fire:
		for _, d := range k.ds {
			if d.state() == running && d.written.Load()+sendWindow-front < need {
				d.stop(d.evicted(k.p.EvictAfter))
			}
		}
		return false
	}
	return true
}

// slowest returns the bytes the slowest destination still in the fan-out
// has sent.
func (k *Kernel) slowest() int64 {
	slow := k.front.Load()
	for _, d := range k.ds {
		if d.state() == running {
			slow = min(slow, d.written.Load())
		}
	}
	return slow
}

// resize moves end to the file's size now (within the limit), before
// the front moves: a file that grew is sent further, and one truncated
// ahead of the front ends there, as a read meets the end it finds. A
// file truncated behind the front fails the destinations that have not
// sent up to its end (errSourceShrank): bytes the fan-out let the others
// send are gone.
func (k *Kernel) resize(front int64) {
	var st unix.Stat_t
	var err error
	if cerr := k.src.Conn.Control(func(sysfd uintptr) { err = unix.Fstat(int(sysfd), &st) }); cerr != nil || err != nil {
		return
	}
	end := st.Size - k.base
	if k.src.Limit >= 0 {
		end = min(end, k.src.Limit)
	}
	k.end = max(end, front)
}

// errSourceShrank is the error of a destination whose sendfile(2) found
// the file's end before the front: the file was truncated meanwhile.
var errSourceShrank = fmt.Errorf("pipes: fan-out: the source file ended before the bytes read: %w", io.ErrUnexpectedEOF)

// sendLoop is a destination's goroutine in a fan-out that sends: it
// sends the file up to the front, waiting for the front to move, until
// it has sent all of it once the front is final, it fails, or it is
// stopped.
func (k *Kernel) sendLoop(d *kdest) {
	for {
		if d.stopped() {
			d.err = d.reason()
			return
		}
		if n := k.front.Load() - d.written.Load(); n > 0 {
			if err := k.sendOut(d, n); err != nil {
				d.err = d.failed(err)
				return
			}
			continue
		}
		select {
		case <-d.more:
		case <-d.life.Done():
		case <-k.final:
			if d.written.Load() == k.front.Load() {
				d.err = k.finalErr
				return
			}
		}
	}
}

// sendOne is one sendfile(2) of at most n bytes of the file at offset
// off (from base) into the socket dfd, under a turn of the source's Gate
// where it has one and turn is set: cerr is the error of the file's
// RawConn (closed), gerr that of a wait for a turn that ctx ended.
func (k *Kernel) sendOne(dfd uintptr, off, n int64, turn bool) (m int, e, cerr, gerr error) {
	if g := k.src.Gate; g != nil && turn {
		entered, err := g.Enter(k.ctx)
		if err != nil {
			return 0, nil, nil, ctxError(k.ctx)
		}
		if entered {
			defer g.Leave()
		}
	}
	cerr = k.src.Conn.Control(func(sfd uintptr) {
		at := k.base + off
		m, e = unix.Sendfile(int(dfd), int(sfd), &at, int(n))
	})
	return m, e, cerr, nil
}

// sendOut sends n bytes of the file, from d's offset in it, into d with
// sendfile(2), waiting on the netpoller while d has no room. Its calls
// take turns until d first has no room, as a copy's do for each grant:
// the calls after a wait are as short as the room d's peer makes.
func (k *Kernel) sendOut(d *kdest, n int64) error {
	var serr error
	turn := true
	werr := d.out.Conn.Write(func(dfd uintptr) bool {
		for n > 0 {
			m, e, cerr, gerr := k.sendOne(dfd, d.written.Load(), min(n, maxSend), turn)
			switch {
			case gerr != nil:
				serr = gerr
			case cerr != nil:
				serr = fd.ClosedErr(cerr, k.src.Conn, nil)
			case m > 0:
				n -= int64(m)
				d.written.Add(int64(m))
				kick(k.progress)
				continue
			case e == unix.EINTR:
				continue
			case e == unix.EAGAIN:
				turn = false
				return d.stopped()
			case e == nil:
				serr = errSourceShrank
			default:
				serr = os.NewSyscallError("sendfile", e)
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
