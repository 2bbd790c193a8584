package uring

import (
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pipes-go/pipes/internal/fd"
	"github.com/pipes-go/pipes/ring"
)

// fileRef is a descriptor as an SQE names it: a slot of the ring's
// registered-file table (fixed) or a number. A caller's descriptor is
// named only through a pin, held for as long as a copy's chains may name
// it, whatever the caller does with its own number meanwhile: io-wq
// resolves an SQE's file when the work runs (a link when the op before it
// completes), so an SQE never carries the caller's number. A pin is a
// slot into which the kernel took its own reference to the file, or a
// duplicate descriptor (F_DUPFD_CLOEXEC) where the table is full or the
// kernel has none. The driver's own pipes are named by number.
type fileRef struct {
	n     int32 // the slot, or the descriptor's number
	fixed bool
}

// plain names the driver's own descriptor fd.
func plain(fd int) fileRef { return fileRef{n: int32(fd)} }

// files is the ring's table of registered files: a sparse table of slots
// (IORING_REGISTER_FILES2 with IORING_RSRC_REGISTER_SPARSE, 5.19; or
// IORING_REGISTER_FILES of empty slots, 5.5), lent to copies to pin their
// descriptors without growing the process's descriptor table. Growing
// that table under many duplicates made fcntl(F_DUPFD) wait in
// synchronize_rcu, one blocked OS thread per waiting copy.
//
// Invariant: a slot is on free only while no SQE prepared since it was
// last filled can still be issued, that is after the last CQE of every
// chain that named it (unpin runs after the copy's chains are done, also
// after a cancel, since a cancelled chain is waited for).
type files struct {
	mu   sync.Mutex
	free []int32 // nil and never filled when the kernel refused a table
}

// init registers a table of n empty slots on r. Where the kernel refuses
// one (an old kernel, n above RLIMIT_NOFILE), the table stays empty and
// every pin is a duplicate.
func (f *files) init(r *ring.Ring, n uint32) {
	if n == 0 || r.RegisterFilesSparse(n) != nil {
		return
	}
	f.free = make([]int32, n)
	for i := range f.free {
		f.free[i] = int32(len(f.free) - 1 - i) // slot 0 first
	}
}

// take returns a free slot, or false when none is.
func (f *files) take() (int32, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.free)
	if n == 0 {
		return 0, false
	}
	s := f.free[n-1]
	f.free = f.free[:n-1]
	return s, true
}

// give puts back a slot that is empty and named by no SQE that can still
// be issued.
func (f *files) give(s int32) {
	f.mu.Lock()
	f.free = append(f.free, s)
	f.mu.Unlock()
}

// pin pins the descriptor behind c: into a free slot of the registered
// table, else as a duplicate (fd.Pin). The slot is filled by an
// IORING_OP_FILES_UPDATE that runs at the loop's next submission while
// c.Control holds the caller's descriptor, so the number is the
// caller's file when the kernel takes its reference; as an op, not
// IORING_REGISTER_FILES_UPDATE, it does not wait for the ring's lock in
// a system call of its own (the loop holds that lock while it submits,
// and READs submitted inline can hold it for a disk queue's wait). The
// caller unpins it once the last CQE of every chain naming it has been
// reaped.
func (d *Driver) pin(c syscall.RawConn) (fileRef, error) {
	s, ok := d.files.take()
	if !ok {
		n, err := fd.Pin(c)
		return fileRef{n: int32(n)}, err
	}
	var res int32
	var uerr error
	cerr := c.Control(func(sysfd uintptr) {
		res, uerr = d.updateSlot(s, int32(sysfd))
	})
	switch {
	case cerr != nil:
		d.files.give(s) // left empty: the update never ran
		return fileRef{}, cerr
	case uerr != nil:
		d.files.give(s)
		return fileRef{}, uerr
	case res == -int32(unix.EBADF):
		d.files.give(s)
		return fileRef{}, &os.SyscallError{Syscall: "io_uring FILES_UPDATE", Err: unix.EBADF}
	case res < 0:
		d.files.give(s)
		n, err := fd.Pin(c) // the table refused this file: a duplicate
		return fileRef{n: int32(n)}, err
	}
	return fileRef{n: s, fixed: true}, nil
}

// unpin releases p: it empties its slot and gives the slot back, or
// closes the duplicate. Requests still holding the file keep their own
// reference; by the rule of pin none can still resolve the slot. A slot
// the kernel would not empty is not reused.
func (d *Driver) unpin(p fileRef) {
	if !p.fixed {
		unix.Close(int(p.n))
		return
	}
	res, err := d.updateSlot(p.n, -1)
	if err != nil {
		// The loop takes no more chains (the driver is closing): the
		// system call empties the slot.
		_, err = d.r.RegisterFilesUpdate(uint32(p.n), []int32{-1})
		res = 1
	}
	if err == nil && res == 1 {
		d.files.give(p.n)
	}
}

// updateSlot puts fd in the registered-file slot s (-1 empties it) by a
// FILES_UPDATE op, and returns the op's result: 1, or -errno. The op
// runs at submission, so nothing cancels it; err is the driver's when it
// takes no more chains.
func (d *Driver) updateSlot(s int32, fd int32) (res int32, err error) {
	var c chain
	c.reset(1)
	c.ops[0].prepFilesUpdate(s, fd)
	if err := d.submitChain(&c); err != nil {
		return 0, err
	}
	<-c.done
	return c.ops[0].res, nil
}
