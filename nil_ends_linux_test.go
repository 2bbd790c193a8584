//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// Nil ends: a nil pointer given as a reader or writer to a copy, a
// fan-out or a Copier fails with an error matching os.ErrInvalid; a nil
// slice or map, whose methods may well work, is used as io.Copy uses it.

// adv32Writers is a writer of a slice type: its nil value is an empty
// list of writers, a working io.Writer that takes every byte, as an
// empty io.MultiWriter does.
type adv32Writers []io.Writer

func (ws adv32Writers) Write(p []byte) (int, error) {
	for _, w := range ws {
		if n, err := w.Write(p); err != nil {
			return n, err
		}
	}
	return len(p), nil
}

// adv32Counts is a writer of a map type with a value receiver that only
// reads the map: its nil value works too.
type adv32Counts map[string]io.Writer

func (c adv32Counts) Write(p []byte) (int, error) {
	if w := c["tee"]; w != nil {
		return w.Write(p)
	}
	return len(p), nil
}

// adv32Chunks is a reader of a slice type whose nil value is at EOF.
type adv32Chunks [][]byte

func (c adv32Chunks) Read(p []byte) (int, error) {
	if len(c) == 0 {
		return 0, io.EOF
	}
	return copy(p, c[0]), nil
}

// TestAdv32fNilSliceAndMapEnds: a nil slice or map is a Go value whose
// methods may well work (an empty list of writers); io.Copy uses it as
// it is. Only a nil pointer (whose methods would dereference it) is
// refused by Copy, CopyAsync, CopyBatch and FanOut; a nil slice or map
// must get io.Copy's result.
func TestAdv32fNilSliceAndMapEnds(t *testing.T) {
	const data = "hello, nil slice"
	cases := []struct {
		name string
		dst  io.Writer
		src  func() io.Reader
	}{
		{"nil-slice-dst", adv32Writers(nil), func() io.Reader { return strings.NewReader(data) }},
		{"nil-map-dst", adv32Counts(nil), func() io.Reader { return strings.NewReader(data) }},
		{"nil-slice-src", io.Discard, func() io.Reader { return adv32Chunks(nil) }},
		{"nil-slice-src-limited", io.Discard, func() io.Reader { return io.LimitReader(adv32Chunks(nil), 5) }},
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, c := range cases {
			t.Run(ec.name+"/"+c.name, func(t *testing.T) {
				wantN, wantErr := io.Copy(c.dst, c.src())
				if wantErr != nil {
					t.Fatalf("io.Copy = %d, %v", wantN, wantErr)
				}
				if n, err := e.Copy(c.dst, c.src()); n != wantN || err != nil {
					t.Errorf("Copy = %d, %v; io.Copy = %d, nil", n, err, wantN)
				}
				if n, err := e.CopyAsync(context.Background(), c.dst, c.src()).Wait(); n != wantN || err != nil {
					t.Errorf("CopyAsync = %d, %v; io.Copy = %d, nil", n, err, wantN)
				}
				res := e.CopyBatch(context.Background(), []Pair{{Dst: c.dst, Src: c.src()}})
				if res[0].Written != wantN || res[0].Err != nil {
					t.Errorf("CopyBatch = %+v; io.Copy = %d, nil", res[0], wantN)
				}
				var buf bytes.Buffer
				res = e.FanOut(context.Background(), c.src(), []io.Writer{c.dst, &buf})
				for i, r := range res {
					if r.Written != wantN || r.Err != nil {
						t.Errorf("FanOut[%d] = %+v; io.Copy = %d, nil", i, r, wantN)
					}
				}
			})
		}
	}
}

// TestAdv32fCopierNilEnds: a nil reader or writer fails NewCopier and
// Add with an error matching os.ErrInvalid, as a nil *os.File's methods
// fail, and as a *PipeReader or *PipeWriter with no file did already;
// a nil one failed with an error that matched nothing.
func TestAdv32fCopierNilEnds(t *testing.T) {
	fdtest.Check(t)
	src, w, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	defer w.Close()
	outR, out, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	defer out.Close()
	cases := []struct {
		name string
		err  func() error
	}{
		{"nil reader", func() error { _, err := NewCopier(context.Background(), nil); return err }},
		{"reader without a file", func() error { _, err := NewCopier(context.Background(), &PipeReader{}); return err }},
		{"nil writer", func() error { _, err := NewCopier(context.Background(), src, out, nil); return err }},
		{"writer without a file", func() error { _, err := NewCopier(context.Background(), src, &PipeWriter{}); return err }},
	}
	for _, c := range cases {
		if err := c.err(); !errors.Is(err, os.ErrInvalid) {
			t.Errorf("NewCopier with a %s: %v; want an error matching os.ErrInvalid", c.name, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cp, err := NewCopier(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []*PipeWriter{nil, {}} {
		if err := cp.Add(pw); !errors.Is(err, os.ErrInvalid) {
			t.Errorf("Add(%#v): %v; want an error matching os.ErrInvalid", pw, err)
		}
	}
	cancel()
	if err := cp.Wait(); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait = %v", err)
	}
}

// TestAdv4NilEnds: an end that is a nil pointer in an interface (a nil
// *net.TCPConn, *net.UnixConn or *os.File, also behind an
// *io.LimitedReader) cannot be copied. io.Copy fails on a nil *os.File
// (os.ErrInvalid) but panics on a nil *net.TCPConn; CopyAsync panicked
// in its own goroutine, which no caller can recover: the program died.
// FanOut, which checks for a nil source, did not look inside an
// *io.LimitedReader and panicked too. Every API must return an error
// wrapping os.ErrInvalid, with nothing copied and the other end
// untouched.
func TestAdv4NilEnds(t *testing.T) {
	fdtest.Check(t)
	data := fdtest.Random(1000)
	nils := []struct {
		name string
		v    any
	}{
		{"file", (*os.File)(nil)},
		{"tcp", (*net.TCPConn)(nil)},
		{"unix", (*net.UnixConn)(nil)},
	}
	for _, ec := range engineCases(t) {
		e := newTestEngine(t, ec.opts...)
		for _, nv := range nils {
			for _, side := range []string{"src", "limited-src", "dst"} {
				for _, api := range adv4APIs {
					t.Run(fmt.Sprintf("%s/%s/%s/%s", ec.name, nv.name, side, api.name), func(t *testing.T) {
						f := fdtest.TempFile(t, data)
						w, finish := advSink(t, "pipe")
						var dst io.Writer = w
						var src io.Reader = f
						switch side {
						case "src":
							src = nv.v.(io.Reader)
						case "limited-src":
							src = &io.LimitedReader{R: nv.v.(io.Reader), N: 100}
						case "dst":
							dst = nv.v.(io.Writer)
						}
						n, err := api.run(context.Background(), e, dst, src)
						got := finish()
						if n != 0 || len(got) != 0 || !errors.Is(err, os.ErrInvalid) {
							t.Errorf("%s = (%d, %v), destination got %d bytes; want (0, an error wrapping os.ErrInvalid)", api.name, n, err, len(got))
						}
						if off, err := f.Seek(0, io.SeekCurrent); err != nil || off != 0 {
							t.Errorf("the source file's offset is %d, %v after the copy, want 0", off, err)
						}
					})
				}
			}
		}
	}
}
