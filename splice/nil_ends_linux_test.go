//go:build linux

package splice

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
)

// TestNilEnds: Copy and Sendfile with a nil End, or an End without a
// Conn, report the pair unhandled with nothing moved, and Inspect of a
// nil RawConn fails with os.ErrInvalid; none panics.
func TestNilEnds(t *testing.T) {
	f := tempFile(t, []byte("hello"))
	a, _ := connPair(t, "tcp")
	good := func() (dst, src *End) { return endOf(t, a.(syscall.Conn), false), endOf(t, f, true) }
	for _, tc := range []struct {
		name string
		ends func() (dst, src *End)
	}{
		{"nil dst", func() (*End, *End) { _, s := good(); return nil, s }},
		{"nil src", func() (*End, *End) { d, _ := good(); return d, nil }},
		{"dst without Conn", func() (*End, *End) { _, s := good(); return &End{}, s }},
		{"src without Conn", func() (*End, *End) { d, _ := good(); return d, &End{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst, src := tc.ends()
			if n, handled, err := Copy(context.Background(), dst, src, -1, nil); n != 0 || handled || err != nil {
				t.Errorf("Copy = %d, %v, %v; want 0, false, nil", n, handled, err)
			}
			if n, handled, err := Sendfile(context.Background(), dst, src, -1); n != 0 || handled || err != nil {
				t.Errorf("Sendfile = %d, %v, %v; want 0, false, nil", n, handled, err)
			}
		})
	}
	if _, err := Inspect(nil); !errors.Is(err, os.ErrInvalid) {
		t.Errorf("Inspect(nil) = %v, want an error wrapping os.ErrInvalid", err)
	}
}
