//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
)

// The ticker rep's destinations are drained by a process of their own,
// so that the process measured holds only the copies and the ticker: in
// the same process the drainers' goroutines share its run queue, and the
// ticker waited behind them more than behind the copies
// (docs/benchmarks.md, "What makes a bad ticker rep").
const sinkProcEnv = "PIPES_BENCH_SINKS"

// sinkSpec is what a sink process is asked to do: accept n connections
// and drain each, with a checksum when verify.
type sinkSpec struct {
	N        int  `json:"n"`
	Verify   bool `json:"verify"`
	PipeSize int  `json:"pipe_size"`
}

// sinkMsg is one line from a sink process: first its address, then one
// result per connection as it reaches EOF.
type sinkMsg struct {
	Addr  string `json:"addr,omitempty"`
	Index int    `json:"index"`
	N     int64  `json:"n"`
	Sum   uint32 `json:"sum"`
	Err   string `json:"err,omitempty"`
}

// runSinkProc is the sink process: it reads a sinkSpec from in, writes
// its address to out, and drains the n connections made to it. Each
// connection starts with its index (4 bytes, big endian), not counted.
func runSinkProc(in io.Reader, out io.Writer) error {
	var spec sinkSpec
	if err := json.NewDecoder(in).Decode(&spec); err != nil {
		return fmt.Errorf("sink spec: %w", err)
	}
	if _, err := raiseNoFileTo(uint64(2*spec.N + 256)); err != nil {
		return err
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	drain := &drainer{devNull: null, pipes: newPipeCache(spec.PipeSize, spec.N)}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer ln.Close()
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	send := func(m sinkMsg) error {
		mu.Lock()
		defer mu.Unlock()
		return enc.Encode(m)
	}
	if err := send(sinkMsg{Addr: ln.Addr().String()}); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for range spec.N {
		c, err := ln.AcceptTCP()
		if err != nil {
			return err
		}
		wg.Go(func() {
			defer c.Close()
			m := drainConn(c, drain, spec.Verify)
			if err := send(m); err != nil {
				c.Close()
			}
		})
	}
	wg.Wait()
	return nil
}

// drainConn reads a connection's index, then drains the rest.
func drainConn(c *net.TCPConn, drain *drainer, verify bool) sinkMsg {
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return sinkMsg{Index: -1, Err: err.Error()}
	}
	m := sinkMsg{Index: int(binary.BigEndian.Uint32(hdr[:]))}
	fd, err := newRawFD(c)
	if err == nil {
		if verify {
			m.N, m.Sum, err = checksum(fd)
		} else {
			m.N, err = drain.discard(fd)
		}
	}
	if err != nil {
		m.Err = err.Error()
	}
	return m
}

// remoteSinks is the measured process's handle on a sink process.
type remoteSinks struct {
	cmd     *exec.Cmd
	stderr  bytes.Buffer
	results []chan sinkMsg
}

// newRemoteSinks starts a sink process and returns n TCP destinations
// drained by it.
func (w *world) newRemoteSinks(n int, verify bool) (*remoteSinks, []*sink, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	rs := &remoteSinks{cmd: exec.Command(exe), results: make([]chan sinkMsg, n)}
	rs.cmd.Env = append(os.Environ(), sinkProcEnv+"=1")
	rs.cmd.Stderr = &rs.stderr
	stdin, err := rs.cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := rs.cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := rs.cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting the sink process: %w", err)
	}
	spec := sinkSpec{N: n, Verify: verify, PipeSize: w.pipeSize}
	lines := bufio.NewReader(stdout)
	var hello sinkMsg
	if err := json.NewEncoder(stdin).Encode(spec); err != nil {
		return nil, nil, rs.fail(err)
	}
	stdin.Close()
	if err := readSinkMsg(lines, &hello); err != nil || hello.Addr == "" {
		return nil, nil, rs.fail(fmt.Errorf("no address: %v", err))
	}
	for i := range rs.results {
		rs.results[i] = make(chan sinkMsg, 1)
	}
	go rs.dispatch(lines)
	snks, err := rs.dial(hello.Addr)
	if err != nil {
		return nil, nil, rs.fail(err)
	}
	return rs, snks, nil
}

// dial makes the destinations, each announced by its index.
func (rs *remoteSinks) dial(addr string) ([]*sink, error) {
	raddr, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, err
	}
	snks := make([]*sink, len(rs.results))
	for i := range snks {
		c, err := net.DialTCP("tcp", nil, raddr)
		if err != nil {
			closeSinks(snks[:i])
			return nil, err
		}
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(i))
		if _, err := c.Write(hdr[:]); err != nil {
			c.Close()
			closeSinks(snks[:i])
			return nil, err
		}
		res := rs.results[i]
		snks[i] = &sink{w: c, closers: []io.Closer{c}, finish: func() (int64, uint32, error) {
			cerr := c.CloseWrite()
			m := <-res
			if m.Err != "" {
				return m.N, m.Sum, errors.New(m.Err)
			}
			return m.N, m.Sum, cerr
		}}
	}
	return snks, nil
}

func closeSinks(snks []*sink) {
	for _, s := range snks {
		closeAll(s.closers)
	}
}

// dispatch hands each result to its destination's finish; when the
// process ends early, every finish still waiting gets the reason.
func (rs *remoteSinks) dispatch(lines *bufio.Reader) {
	done := make([]bool, len(rs.results))
	for {
		var m sinkMsg
		if err := readSinkMsg(lines, &m); err != nil {
			for i, d := range done {
				if !d {
					rs.results[i] <- sinkMsg{Index: i, Err: fmt.Sprintf("sink process ended: %v", err)}
				}
			}
			return
		}
		if m.Index >= 0 && m.Index < len(done) && !done[m.Index] {
			done[m.Index] = true
			rs.results[m.Index] <- m
		}
	}
}

func readSinkMsg(r *bufio.Reader, m *sinkMsg) error {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, m)
}

// wait reaps the sink process once every destination is finished or
// closed.
func (rs *remoteSinks) wait() error {
	if err := rs.cmd.Wait(); err != nil {
		return fmt.Errorf("sink process: %w: %s", err, rs.stderr.String())
	}
	return nil
}

// fail kills the process and returns err.
func (rs *remoteSinks) fail(err error) error {
	rs.cmd.Process.Kill()
	rs.cmd.Wait()
	return fmt.Errorf("sink process: %w", err)
}
