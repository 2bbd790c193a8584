//go:build linux

package splice

import (
	"context"
	"errors"
	"io"
	"math"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
)

// answerPacer answers every Take with n and err.
type answerPacer struct {
	n        int
	err      error
	refunded int
}

func (p *answerPacer) Take(context.Context, int) (int, error) { return p.n, p.err }
func (p *answerPacer) Refund(n int)                           { p.refunded += n }

var errPacerBoom = errors.New("pacer boom")

// TestCopyPacerAnswers: a Pacer that grants nothing (0, or a negative
// count) with no error ends the copy with an error wrapping
// io.ErrNoProgress, having read nothing, instead of a copy that ends as
// at EOF with nothing copied (or spins, or reports the pair refused); a
// Pacer's own error ends it with that error and a readable message; a
// grant above max copies everything. For every pair of descriptor kinds,
// and for Sendfile.
func TestCopyPacerAnswers(t *testing.T) {
	data := make([]byte, 100000)
	for i := range data {
		data[i] = byte(i)
	}
	type copyFunc func(ctx context.Context, dst, src *End) (int64, bool, error)
	copyFn := func(ctx context.Context, dst, src *End) (int64, bool, error) {
		return Copy(ctx, dst, src, -1, nil)
	}
	sendfileFn := func(ctx context.Context, dst, src *End) (int64, bool, error) {
		return Sendfile(ctx, dst, src, -1)
	}
	for _, tc := range []struct {
		name    string
		n       int
		err     error
		wantErr error // nil: the whole copy
	}{
		{"grants 0", 0, nil, io.ErrNoProgress},
		{"grants -5", -5, nil, io.ErrNoProgress},
		{"fails", 0, errPacerBoom, errPacerBoom},
		{"grants above max", math.MaxInt32, nil, nil},
	} {
		for _, sk := range srcKinds {
			for _, dk := range dstKinds {
				fns := []struct {
					name string
					fn   copyFunc
				}{{"Copy", copyFn}}
				if sk.name == "file" && (dk.name == "tcp" || dk.name == "unix") {
					fns = append(fns, struct {
						name string
						fn   copyFunc
					}{"Sendfile", sendfileFn})
				}
				for _, f := range fns {
					t.Run(tc.name+"/"+f.name+"/"+sk.name+"-"+dk.name, func(t *testing.T) {
						s := sk.make(t, data, false)
						d := dk.make(t)
						se := endOf(t, s.conn, true)
						pacer := &answerPacer{n: tc.n, err: tc.err}
						se.Pacer = pacer
						de := endOf(t, d.conn, false)
						var (
							n       int64
							handled bool
							err     error
						)
						fdtest.Within(t, 20*time.Second, func() { n, handled, err = f.fn(context.Background(), de, se) })
						s.close()
						got := d.finish()
						if !handled {
							if tc.wantErr != nil || err != nil {
								t.Fatalf("= %d, handled false, %v", n, err)
							}
							return // a pair left to the caller: nothing was read
						}
						if tc.wantErr == nil {
							if err != nil || n != int64(len(data)) || sum(got) != sum(data) {
								t.Fatalf("= %d, %v; %d bytes arrived; want %d, nil", n, err, len(got), len(data))
							}
							return
						}
						if !errors.Is(err, tc.wantErr) || n != 0 || len(got) != 0 {
							t.Fatalf("= %d, %v; %d bytes arrived; want 0, an error wrapping %v", n, err, len(got), tc.wantErr)
						}
						if strings.Contains(err.Error(), "%!") {
							t.Errorf("garbled error message: %q", err)
						}
					})
				}
			}
		}
	}
}

// failGate fails every Enter with err.
type failGate struct{ err error }

func (g failGate) Enter(context.Context) (bool, error) { return false, g.err }
func (failGate) Leave()                                {}

// TestSendfileGateError: a Gate whose Enter fails with an error of its
// own (the context still live) ends Sendfile with that error, wrapped in
// a readable message, and nothing sent.
func TestSendfileGateError(t *testing.T) {
	boom := errors.New("gate boom")
	f := tempFile(t, make([]byte, 1000))
	a, b := connPair(t, "tcp")
	d := drainConn(a, b)
	src := endOf(t, f, true)
	src.Gate = failGate{boom}
	n, handled, err := Sendfile(context.Background(), endOf(t, a.(syscall.Conn), false), src, -1)
	got := d.finish()
	if n != 0 || !handled || !errors.Is(err, boom) || len(got) != 0 {
		t.Fatalf("Sendfile = %d, %v, %v (%d bytes arrived); want 0, true, an error wrapping %v", n, handled, err, len(got), boom)
	}
	if strings.Contains(err.Error(), "%!") {
		t.Errorf("garbled error message: %q", err)
	}
}
