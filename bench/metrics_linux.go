package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Process-wide counters for one timed rep:
//   - CPU: getrusage(RUSAGE_SELF) utime+stime. RUSAGE_SELF sums every
//     thread of the process, io_uring's iou-wrk workers included (they are
//     threads of the process).
//   - Context switches: getrusage nvcsw+nivcsw, same scope.
//   - Syscalls: perf_event_open counters on the raw_syscalls:sys_enter
//     tracepoint, one per thread that existed when the counter was opened
//     (at startup), each with inherit set so that every thread created
//     later is counted in its creator's counter. Exact, kernel-side. With
//     inherit_thread (Linux 5.13) too, so that a child process started
//     meanwhile (the proxy scenario's load generator) is not counted.
//   - Threads: num_threads of /proc/self/stat (what /proc/self/task lists),
//     sampled every threadSampleEvery; the peak is kept. The sampler
//     wakes on a timerfd(2) through the netpoller, not on a Go timer: a
//     goroutine a timer readies takes its P's next slot (runnext) and
//     pushes the goroutine there before it, such as the ticker scenario's,
//     to the back of the run queue (docs/benchmarks.md, "What makes a
//     bad ticker rep").

const threadSampleEvery = 5 * time.Millisecond

// syscallCounter counts the process's syscalls with perf tracepoints.
type syscallCounter struct {
	fds []int
	// withChildren: the kernel refused inherit_thread (before Linux
	// 5.13), so child processes started later are counted too.
	withChildren bool
}

// perfBitInheritThread is perf_event_attr.inherit_thread (bit 35, Linux
// 5.13; not in x/sys/unix): inherit the counter into new threads only,
// not into child processes.
const perfBitInheritThread = 1 << 35

var tracefsDirs = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

// sysEnterID returns the id of the raw_syscalls:sys_enter tracepoint,
// mounting tracefs at /sys/kernel/tracing when it is missing and we may.
func sysEnterID() (uint64, error) {
	read := func() (uint64, error) {
		var firstErr error
		for _, d := range tracefsDirs {
			b, err := os.ReadFile(d + "/events/raw_syscalls/sys_enter/id")
			if err == nil {
				return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
			}
			if firstErr == nil {
				firstErr = err
			}
		}
		return 0, firstErr
	}
	id, err := read()
	if err == nil {
		return id, nil
	}
	if os.Geteuid() == 0 {
		if merr := unix.Mount("nodev", tracefsDirs[0], "tracefs", 0, ""); merr == nil {
			return read()
		}
	}
	return 0, fmt.Errorf("raw_syscalls:sys_enter tracepoint id: %w", err)
}

// openSyscallCounter opens one inheriting counter per thread of the
// process. Call it early, before the work to measure starts threads:
// a thread is counted by its own counter or its creator's, never twice.
func openSyscallCounter() (*syscallCounter, error) {
	id, err := sysEnterID()
	if err != nil {
		return nil, err
	}
	tids, err := threadIDs()
	if err != nil {
		return nil, err
	}
	c := &syscallCounter{}
	for _, tid := range tids {
		attr := unix.PerfEventAttr{
			Type:   unix.PERF_TYPE_TRACEPOINT,
			Size:   uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
			Config: id,
			Bits:   unix.PerfBitInherit,
		}
		if !c.withChildren {
			attr.Bits |= perfBitInheritThread
		}
		fd, err := unix.PerfEventOpen(&attr, tid, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if errors.Is(err, unix.EINVAL) && !c.withChildren && len(c.fds) == 0 {
			// A kernel before 5.13: count child processes too.
			c.withChildren = true
			attr.Bits &^= perfBitInheritThread
			fd, err = unix.PerfEventOpen(&attr, tid, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
		}
		if errors.Is(err, unix.ESRCH) {
			continue // the thread exited meanwhile
		}
		if err != nil {
			c.close()
			return nil, fmt.Errorf("perf_event_open(raw_syscalls:sys_enter, tid %d): %w", tid, err)
		}
		c.fds = append(c.fds, fd)
	}
	if len(c.fds) == 0 {
		return nil, errors.New("perf_event_open: no thread to count")
	}
	return c, nil
}

// read returns the syscalls counted so far (including the read syscalls
// it makes itself, one per counter).
func (c *syscallCounter) read() (uint64, error) {
	var total uint64
	var buf [8]byte
	for _, fd := range c.fds {
		n, err := unix.Read(fd, buf[:])
		if err != nil {
			return 0, err
		}
		if n != 8 {
			return 0, fmt.Errorf("perf counter read %d bytes", n)
		}
		total += *(*uint64)(unsafe.Pointer(&buf[0]))
	}
	return total, nil
}

func (c *syscallCounter) close() {
	for _, fd := range c.fds {
		unix.Close(fd)
	}
	c.fds = nil
}

func threadIDs() ([]int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// threadGauge reads the process's thread count with one pread(2) of an
// open /proc/self/stat.
type threadGauge struct {
	f   *os.File
	buf []byte
}

func openThreadGauge() (*threadGauge, error) {
	f, err := os.Open("/proc/self/stat")
	if err != nil {
		return nil, err
	}
	return &threadGauge{f: f, buf: make([]byte, 4096)}, nil
}

func (g *threadGauge) threads() (int, error) {
	n, err := g.f.ReadAt(g.buf, 0)
	if n == 0 && err != nil {
		return 0, err
	}
	return parseNumThreads(g.buf[:n])
}

// parseNumThreads returns field 20 (num_threads) of a /proc/PID/stat line.
// The command name (field 2) may hold spaces and parentheses, so fields
// are counted from the last ')'.
func parseNumThreads(stat []byte) (int, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("/proc/self/stat: no ')'")
	}
	f := strings.Fields(string(stat[i+1:]))
	const numThreads = 20 - 3 // fields after ')' start at field 3 (state)
	if len(f) <= numThreads {
		return 0, errors.New("/proc/self/stat: too few fields")
	}
	return strconv.Atoi(f[numThreads])
}

// meter takes the measurements of one rep.
type meter struct {
	sc       *syscallCounter // nil: syscalls not counted
	scReason string          // why sc is nil
	gauge    *threadGauge
}

func newMeter() *meter {
	m := &meter{}
	sc, err := openSyscallCounter()
	if err != nil {
		m.scReason = err.Error()
	} else {
		m.sc = sc
	}
	g, err := openThreadGauge()
	if err == nil {
		m.gauge = g
	}
	return m
}

// usage is a reading of the process counters.
type usage struct {
	wall     time.Time
	cpu      time.Duration
	csw      int64
	syscalls uint64
}

func (m *meter) usage() (usage, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return usage{}, err
	}
	u := usage{
		wall: time.Now(),
		cpu:  time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		csw:  int64(ru.Nvcsw) + int64(ru.Nivcsw), // int32 on 32-bit systems
	}
	if m.sc != nil {
		n, err := m.sc.read()
		if err != nil {
			return usage{}, err
		}
		u.syscalls = n
	}
	return u, nil
}

// span is one measurement in progress.
type span struct {
	m     *meter
	start usage
	stop  chan struct{}
	done  chan struct{}
	peak  int
	calls uint64 // the sampler's own system calls: timerfd reads, preads
	mu    sync.Mutex
	// stopped: end or abort has closed stop (the rep's goroutine's).
	stopped bool
}

// begin starts measuring, with a goroutine sampling the thread count.
func (m *meter) begin() (*span, error) {
	s := &span{m: m, stop: make(chan struct{}), done: make(chan struct{})}
	if m.gauge != nil {
		n, err := m.gauge.threads()
		if err != nil {
			return nil, err
		}
		s.peak = n
		go s.sample()
	} else {
		close(s.done)
	}
	u, err := m.usage()
	if err != nil {
		close(s.stop)
		return nil, err
	}
	s.start = u
	return s, nil
}

func (s *span) sample() {
	defer close(s.done)
	t, err := newIntervalTimer(threadSampleEvery)
	if err != nil {
		<-s.stop // the peak stays what begin and end see
		return
	}
	rc, err := t.SyscallConn()
	if err != nil {
		t.Close()
		<-s.stop
		return
	}
	go func() {
		<-s.stop
		t.Close() // ends the wait below
	}()
	var expirations [8]byte
	for {
		var reads uint64
		err := rc.Read(func(fd uintptr) bool {
			reads++
			_, err := unix.Read(int(fd), expirations[:])
			return err != unix.EAGAIN
		})
		n, gerr := s.m.gauge.threads()
		s.mu.Lock()
		s.calls += reads + 1
		if gerr == nil && n > s.peak {
			s.peak = n
		}
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// newIntervalTimer returns a timerfd(2) that expires every d, as an
// *os.File whose Reads wait on the netpoller: a goroutine the netpoller
// readies joins the back of a run queue, where one a Go timer readies
// takes the front.
func newIntervalTimer(d time.Duration) (*os.File, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("timerfd_create", err)
	}
	ts := unix.NsecToTimespec(d.Nanoseconds())
	if err := unix.TimerfdSettime(fd, 0, &unix.ItimerSpec{Interval: ts, Value: ts}, nil); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("timerfd_settime", err)
	}
	return os.NewFile(uintptr(fd), "timerfd"), nil
}

// abort stops measuring a rep that failed, if end has not: it stops the
// sampler goroutine, which would otherwise sample beside the next rep's
// (they share the gauge's buffer). Reps defer it.
func (s *span) abort() {
	if !s.stopped {
		s.stopped = true
		close(s.stop)
		<-s.done
	}
}

// end stops measuring; bytes is what the rep moved.
func (s *span) end(bytes int64) (repMetrics, error) {
	u, err := s.m.usage()
	if err != nil {
		s.abort()
		return repMetrics{}, err
	}
	s.stopped = true
	close(s.stop)
	<-s.done
	r := repMetrics{
		Bytes:   bytes,
		Seconds: u.wall.Sub(s.start.wall).Seconds(),
		CPU:     (u.cpu - s.start.cpu).Seconds(),
		CtxSw:   u.csw - s.start.csw,
		Threads: s.peak,
	}
	if s.m.gauge != nil {
		if n, err := s.m.gauge.threads(); err == nil && n > r.Threads {
			r.Threads = n
		}
	}
	if s.m.sc != nil {
		// The thread sampler's calls are the harness's, not the copy's.
		n := int64(u.syscalls-s.start.syscalls) - int64(s.calls)
		r.Syscalls = &n
	}
	return r, nil
}
