//go:build linux

package splice

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Pipe is a kernel pipe used as a splice buffer. Both ends are
// O_NONBLOCK|O_CLOEXEC. A Pipe is not safe for concurrent use: one copy
// owns it at a time. Make one with NewPipe or take one from a Pool: the
// zero Pipe has no descriptors and behaves as a closed one (its ReadFd
// and WriteFd are -1, Close does nothing, Drain fails).
type Pipe struct {
	rfd, wfd int
	size     int
	data     int   // bytes the copy loop put in and has not taken out
	dirty    bool  // bytes were abandoned in the pipe: never pool it
	pool     *Pool // non-nil while the pipe counts against a pool
	open     bool  // made by NewPipe and not closed
	idle     bool  // in pool's idle list (guarded by pool.mu)
}

// NewPipe creates a pipe and asks the kernel for size bytes of buffer
// (F_SETPIPE_SZ, rounded up by the kernel to a power-of-two number of
// pages). If the kernel refuses the size (EPERM: above
// /proc/sys/fs/pipe-max-size for an unprivileged user, or the per-user
// pipe quota /proc/sys/fs/pipe-user-pages-soft is used up; EINVAL, ENOMEM),
// the pipe keeps the size it was given, which may be as small as two
// pages once the quota is exhausted. Size reports the actual size. size <=
// 0 keeps the kernel's default (64 KiB), and so does a size above 2 GiB,
// which the kernel refuses (F_SETPIPE_SZ takes an unsigned int: passed on,
// 4 GiB + 4 KiB would ask for 4 KiB). NewPipe fails only if pipe2(2)
// does (EMFILE, ENFILE, ENOMEM), with an *os.SyscallError.
func NewPipe(size int) (*Pipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	p := &Pipe{rfd: fds[0], wfd: fds[1], open: true}
	if size > 0 && int64(size) <= maxPipeSize {
		if n, err := unix.FcntlInt(uintptr(p.wfd), unix.F_SETPIPE_SZ, size); err == nil {
			p.size = n
		}
	}
	if p.size == 0 {
		n, err := unix.FcntlInt(uintptr(p.wfd), unix.F_GETPIPE_SZ, 0)
		if err != nil {
			p.Close()
			return nil, os.NewSyscallError("fcntl F_GETPIPE_SZ", err)
		}
		p.size = n
	}
	return p, nil
}

// ReadFd returns the read end's descriptor. It stays valid until Close;
// -1 after Close, and for the zero Pipe.
func (p *Pipe) ReadFd() int {
	if !p.open {
		return -1
	}
	return p.rfd
}

// WriteFd returns the write end's descriptor. It stays valid until Close;
// -1 after Close, and for the zero Pipe.
func (p *Pipe) WriteFd() int {
	if !p.open {
		return -1
	}
	return p.wfd
}

// Size returns the pipe's buffer size in bytes, as the kernel reports it.
func (p *Pipe) Size() int { return p.size }

// Buffered returns the bytes Copy put into the pipe and has not taken out.
// Callers that splice into the pipe themselves track their own count; Pool.Put
// checks the kernel's count (FIONREAD) as well.
func (p *Pipe) Buffered() int { return p.data }

// Close closes both ends. Bytes still in the pipe are lost. A pipe taken
// from a Pool may be closed instead of put back: it then stops counting
// against the pool's bound. Close is idempotent, and does nothing on the
// zero Pipe. Closing a pipe already put back into its Pool (which the
// caller no longer owns) takes it out of the pool's idle pipes, so that
// Get never hands out a closed pipe.
func (p *Pipe) Close() error {
	if p == nil || !p.open {
		return nil
	}
	if pool := p.pool; pool != nil {
		p.pool = nil
		pool.release(p)
	}
	p.open = false
	err1 := unix.Close(p.rfd)
	err2 := unix.Close(p.wfd)
	p.rfd, p.wfd = -1, -1
	if err1 != nil {
		return os.NewSyscallError("close", err1)
	}
	if err2 != nil {
		return os.NewSyscallError("close", err2)
	}
	return nil
}

// inKernel returns the bytes the kernel holds in the pipe (FIONREAD), or
// -1 if it cannot tell.
func (p *Pipe) inKernel() int {
	n, err := unix.IoctlGetInt(p.rfd, unix.TIOCINQ) // FIONREAD
	if err != nil {
		return -1
	}
	return n
}

// maxPipeSize is the largest size F_SETPIPE_SZ takes (the kernel's
// round_pipe_size refuses larger ones).
const maxPipeSize = 1 << 31

// DefaultPipeSize is the pipe size NewPool uses when asked for <= 0: the
// default /proc/sys/fs/pipe-max-size, and the size Go's own splice path
// uses.
const DefaultPipeSize = 1 << 20

// DefaultMaxPipes is the bound NewPool uses when asked for <= 0.
const DefaultMaxPipes = 256

// ErrPoolClosed is returned by Get after Close.
var ErrPoolClosed = errors.New("splice: pipe pool closed")

// PoolStats is a snapshot of a Pool's counters.
type PoolStats struct {
	Size      int    // pipe size asked of the kernel (after the pipe-max-size cap)
	Max       int    // bound on pipes alive at once
	Alive     int    // pipes that exist now: idle + in use
	Idle      int    // pipes waiting in the pool
	InUse     int    // pipes handed out by Get or TryGet and not yet returned
	Created   uint64 // pipes created over the pool's life
	Discarded uint64 // pipes closed on Put because they held bytes
	Waits     uint64 // Get calls that had to wait for a pipe
	Exhausted uint64 // TryGet calls that found no pipe free (the copy went on through a buffer)
	Shrunk    uint64 // pipes the kernel gave less than Size (pipe quota)
}

// Pool hands out pipes of one size and bounds how many exist at once: when
// all are in use, Get waits until one is returned (or closed) or its
// context ends. This bounds pipe memory (each pipe pins up to its size in
// kernel pages) and descriptors however many copies run. A Pool is safe
// for concurrent use. The zero Pool is ready to use, as NewPool(0, 0)
// (DefaultPipeSize, DefaultMaxPipes).
type Pool struct {
	size, max int

	mu      sync.Mutex
	idle    []*Pipe
	alive   int
	inUse   int
	closed  bool
	waiters []chan struct{} // FIFO of blocked Gets, each signalled once

	created, discarded, waits, shrunk, exhausted atomic.Uint64

	// buffers holds the userspace buffers of copy rounds that go
	// without a pipe (see TryGet): bufferSize bytes each.
	buffers sync.Pool
}

// bufferSize is the size of the userspace buffer a copy round uses when
// it has no pipe: that of io.Copy's buffer, twice over.
const bufferSize = 64 << 10

// NewPool returns a pool of pipes of pipeSize bytes, at most maxPipes of
// which exist at once. pipeSize <= 0 means DefaultPipeSize; it is capped
// by /proc/sys/fs/pipe-max-size (beyond which an unprivileged F_SETPIPE_SZ
// fails). maxPipes <= 0 means DefaultMaxPipes. Pipes are created lazily.
func NewPool(pipeSize, maxPipes int) *Pool {
	if pipeSize <= 0 {
		pipeSize = DefaultPipeSize
	}
	if m := pipeMaxSize(); m > 0 && pipeSize > m {
		pipeSize = m
	}
	if maxPipes <= 0 {
		maxPipes = DefaultMaxPipes
	}
	return &Pool{size: pipeSize, max: maxPipes}
}

// initLocked gives a zero Pool NewPool(0, 0)'s size and bound. Called
// with p.mu held by every method that reads them.
func (p *Pool) initLocked() {
	if p.max == 0 {
		q := NewPool(0, 0)
		p.size, p.max = q.size, q.max
	}
}

// pipeMaxSize reads /proc/sys/fs/pipe-max-size; 0 if unreadable.
func pipeMaxSize() int {
	b, err := os.ReadFile("/proc/sys/fs/pipe-max-size")
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
}

// TryGet returns an empty pipe, an idle one or a new one while fewer than
// the bound exist, and never waits: it returns nil when every pipe is in
// use (counted as Exhausted), when the pool is closed, or when the kernel
// refuses a new pipe (EMFILE, ENFILE, ENOMEM). A copy that gets nil goes
// on without a pipe rather than wait for one: the pipes in use may be held
// by copies whose peers never read again. The caller owns the pipe until
// it hands it to Put (or closes it).
func (p *Pool) TryGet() *Pipe {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.initLocked()
	if n := len(p.idle); n > 0 {
		pp := p.idle[n-1]
		p.idle = p.idle[:n-1]
		pp.idle = false
		p.inUse++
		p.mu.Unlock()
		return pp
	}
	if p.alive >= p.max {
		p.mu.Unlock()
		p.exhausted.Add(1)
		return nil
	}
	p.alive++
	p.inUse++
	p.mu.Unlock()
	pp, err := p.newPipe()
	if err != nil {
		p.exhausted.Add(1)
		return nil
	}
	return pp
}

// newPipe creates a pipe counted in alive and inUse by the caller; on
// failure it takes that count back.
func (p *Pool) newPipe() (*Pipe, error) {
	pp, err := NewPipe(p.size)
	if err != nil {
		p.mu.Lock()
		p.alive--
		p.inUse--
		p.signalLocked()
		p.mu.Unlock()
		return nil, err
	}
	pp.pool = p
	p.created.Add(1)
	if pp.size < p.size {
		p.shrunk.Add(1)
	}
	return pp, nil
}

// buffer returns a userspace buffer of bufferSize bytes; putBuffer takes
// it back. A nil pool allocates one.
func (p *Pool) buffer() *[]byte {
	if p != nil {
		if b, ok := p.buffers.Get().(*[]byte); ok {
			return b
		}
	}
	b := make([]byte, bufferSize)
	return &b
}

func (p *Pool) putBuffer(b *[]byte) {
	if p != nil {
		p.buffers.Put(b)
	}
}

// Get returns an empty pipe: an idle one, or a new one while fewer than
// the bound exist, or else the next one returned, waiting for it. It fails
// with an error wrapping ctx.Err() if ctx ends first, with ErrPoolClosed
// after Close, or with NewPipe's error. The caller owns the pipe until it
// hands it to Put (or closes it).
func (p *Pool) Get(ctx context.Context) (*Pipe, error) {
	waited := false
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}
		p.initLocked()
		if n := len(p.idle); n > 0 {
			pp := p.idle[n-1]
			p.idle = p.idle[:n-1]
			pp.idle = false
			p.inUse++
			p.mu.Unlock()
			return pp, nil
		}
		if p.alive < p.max {
			p.alive++
			p.inUse++
			p.mu.Unlock()
			return p.newPipe()
		}
		ch := make(chan struct{})
		p.waiters = append(p.waiters, ch)
		p.mu.Unlock()
		if !waited {
			waited = true
			p.waits.Add(1)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			p.mu.Lock()
			if !p.dropWaiterLocked(ch) {
				// Signalled as ctx ended: pass the signal on.
				p.signalLocked()
			}
			p.mu.Unlock()
			return nil, fmt.Errorf("splice: waiting for a pipe: %w", ctx.Err())
		}
	}
}

// signalLocked wakes the oldest waiting Get, if any.
func (p *Pool) signalLocked() {
	if len(p.waiters) == 0 {
		return
	}
	ch := p.waiters[0]
	p.waiters[0] = nil
	p.waiters = p.waiters[1:]
	close(ch)
}

func (p *Pool) dropWaiterLocked(ch chan struct{}) bool {
	for i, c := range p.waiters {
		if c == ch {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			return true
		}
	}
	return false
}

// release accounts for the pool pipe pp being closed: one in use, or an
// idle one (closed by Close, or by a caller that put it back first),
// which it takes out of the idle pipes.
func (p *Pool) release(pp *Pipe) {
	p.mu.Lock()
	p.alive--
	if pp.idle {
		pp.idle = false
		for i, q := range p.idle {
			if q == pp {
				p.idle = append(p.idle[:i], p.idle[i+1:]...)
				break
			}
		}
	} else {
		p.inUse--
	}
	p.signalLocked()
	p.mu.Unlock()
}

// Put returns a pipe taken from Get. A pipe that may hold bytes
// (Buffered() > 0, or the kernel's FIONREAD count is not zero or cannot be
// read) is closed, never pooled: the next user would deliver them. Pipes
// put after Close are closed. Put(nil), Put of a closed pipe, and putting
// a pipe that is not from this pool (it is then closed) are harmless.
//
// Putting a pipe back twice is a programmer error, as unlocking an
// unlocked sync.Mutex is: once the first Put has made it idle, a second
// would let two Gets hand out the same pipe, and two copies mix their
// bytes in it. Put panics when it finds the pipe idle in the pool (a
// second Put after a Get has handed the pipe out again cannot be told
// from that Get's own Put).
func (p *Pool) Put(pp *Pipe) {
	if pp == nil || !pp.open {
		return
	}
	if pp.pool != p {
		pp.Close()
		return
	}
	if pp.data != 0 || pp.dirty || pp.inKernel() != 0 {
		p.discarded.Add(1)
		pp.Close()
		return
	}
	p.reuse(pp)
}

// putClean is Put for a pipe the caller knows to be empty (its own count
// is exact and it abandoned no bytes): it skips the kernel's count, one
// ioctl(2) per round of a copy.
func (p *Pool) putClean(pp *Pipe) {
	if pp.data != 0 || pp.dirty || pp.pool != p {
		p.Put(pp)
		return
	}
	p.reuse(pp)
}

// reuse makes the empty pipe pp, of this pool, idle (closes it if the
// pool is closed) and wakes a waiting Get.
func (p *Pool) reuse(pp *Pipe) {
	p.mu.Lock()
	if pp.idle {
		p.mu.Unlock()
		panic("splice: Pool.Put of a pipe already put back")
	}
	if p.closed {
		p.mu.Unlock()
		pp.Close()
		return
	}
	p.inUse--
	pp.idle = true
	p.idle = append(p.idle, pp)
	p.signalLocked()
	p.mu.Unlock()
}

// Close closes the idle pipes and makes Get fail with ErrPoolClosed; pipes
// in use are closed when they are put back. Waiting Gets fail too. Close
// is idempotent.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	idle := p.idle
	p.idle = nil
	for len(p.waiters) > 0 {
		p.signalLocked()
	}
	p.mu.Unlock()
	var errs []error
	for _, pp := range idle {
		// Still marked idle, so release counts it out of alive and not
		// of inUse.
		errs = append(errs, pp.Close())
	}
	return errors.Join(errs...)
}

// Stats returns a snapshot of the pool's counters.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.initLocked()
	return PoolStats{
		Size:      p.size,
		Max:       p.max,
		Alive:     p.alive,
		Idle:      len(p.idle),
		InUse:     p.inUse,
		Created:   p.created.Load(),
		Discarded: p.discarded.Load(),
		Waits:     p.waits.Load(),
		Shrunk:    p.shrunk.Load(),
		Exhausted: p.exhausted.Load(),
	}
}
