//go:build !pipes_portable

package pipes

import (
	"context"
	"io"
	"syscall"

	"github.com/pipes-go/pipes/internal/fanout"
	"golang.org/x/sys/unix"
)

// fanOutKernel runs the fan-out in the kernel (fanout.Kernel: splice(2)
// and tee(2)), and then returns inKernel. Where it cannot it reads
// nothing and returns why: the source cannot be spliced (no descriptor, a
// blocking pipe or socket, a device) or no destination can be spliced
// into (fallbackNoFD); pipes cannot be had, or the kernel refuses the
// source (fallbackRefused). The caller then fans out through userspace.
// A non-nil pacer grants the reads of src (RateLimit). *read is set to
// the bytes read from src, also when a destination's Write panics.
func (e *Engine) fanOutKernel(ctx context.Context, src io.Reader, limit int64, pacer *Limiter, ds []*fanout.Dest, p fanout.Policy, read *int64) (why fallback) {
	se, ok := readerEndpoint(src)
	if !ok {
		return fallbackNoFD
	}
	nonblock := se.Info.Flags&unix.O_NONBLOCK != 0
	switch {
	case se.kind == kindFile && limit >= 0 && openedDirect(se.Conn):
		// A file opened O_DIRECT reads only block-aligned lengths: the
		// read that meets an unaligned limit fails (EINVAL), io.Copy's
		// in a read of its 32 KiB buffer, the kernel fan-out's in a
		// chunk of its staging pipe, which puts the failure, and the
		// bytes delivered before it, elsewhere. Read it as io.Copy does.
		return fallbackRefused
	case se.kind == kindFile:
	case (se.kind == kindPipe || se.kind == kindSocket) && nonblock:
	default:
		return fallbackNoFD
	}
	outs := make([]fanout.Out, len(ds))
	anySplice := false
	for i, d := range ds {
		outs[i] = fanOutTarget(d.Writer())
		anySplice = anySplice || outs[i].Conn != nil
	}
	if !anySplice {
		return fallbackNoFD
	}
	source := fanout.Source{Conn: se.Conn, Kind: se.kind, Limit: limit}
	if pacer != nil {
		// Paced reads wait for the Limiter; they need no warming.
		source.Pacer = pacer
	} else if warm := e.sys.warmer(&se, limit); warm != nil {
		// A fan-out is one reader however many destinations it has:
		// warmed whatever RingMinConcurrency says. What the Warmer has
		// read in, socket destinations may send from the file itself
		// (fanout.Source.Send).
		source.Pacer, source.Send, source.Gate = warm, true, warm.Senders()
		defer warm.Close()
	}
	k := fanout.NewKernel(ctx, source, p)
	defer k.Close()
	for i, d := range ds {
		k.Add(d, outs[i])
	}
	if err := k.Open(); err != nil {
		return fallbackRefused
	}
	if pr, ok := src.(*PipeReader); ok {
		// A read-only fifo that has had no writer yet reads as EOF:
		// wait for its first writer, as Copy does. An error here
		// recurs at the first read.
		pr.awaitFirstWriter()
	}
	defer func() { *read = k.Read() }() // also when Run panics
	if handled, _ := k.Run(); !handled {
		return fallbackRefused
	}
	e.stats.spliceLoop.Add(1)
	return inKernel
}

// fanOutTarget returns how the kernel fan-out writes to w: spliced into,
// for regular files not in append mode (splice refuses O_APPEND), and
// pipes, fifos and stream sockets in non-blocking mode (waited for on the
// netpoller); else with w's Write.
func fanOutTarget(w io.Writer) fanout.Out {
	ep, ok := writerEndpoint(w)
	if !ok {
		return fanout.Out{}
	}
	switch ep.kind {
	case kindFile:
		if ep.Info.Flags&unix.O_APPEND != 0 {
			return fanout.Out{}
		}
	case kindPipe, kindSocket:
		if ep.Info.Flags&unix.O_NONBLOCK == 0 {
			return fanout.Out{}
		}
	default:
		return fanout.Out{}
	}
	return fanout.Out{Conn: ep.Conn, Kind: ep.kind}
}

// openedDirect reports whether the file behind c was opened O_DIRECT
// (an endpoint's Info holds no status flags for a regular file).
func openedDirect(c syscall.RawConn) bool {
	direct := false
	c.Control(func(fd uintptr) {
		fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		direct = err == nil && fl&unix.O_DIRECT != 0
	})
	return direct
}
