//go:build !pipes_portable

package pipes

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

// Adversarial tests, thirty-second round (f).

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
