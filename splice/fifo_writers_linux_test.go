package splice

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pipes-go/pipes/internal/fdtest"
	"golang.org/x/sys/unix"
)

// TestFifoWriterAfterEnd copies a fifo into a file where a new writer
// writes right after the splice that found the fifo at its end (no
// writer, no bytes), before the copy looks for bytes in it
// (afterEmptySplice). Bytes in the pipe after such a 0 are also what a
// destination that takes none of them leaves (errTookNone), so the copy
// splices once more before it concludes that: here that splice moves
// the new writer's bytes, and the copy goes on to its end.
func TestFifoWriterAfterEnd(t *testing.T) {
	fdtest.Check(t)
	first, second := fdtest.Random(100<<10+3), fdtest.Random(5000)
	path := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fed := fdtest.WriteAndClose(w, first)
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()

	src, dst := endOf(t, r, true), endOf(t, out, false)
	hooked := 0
	src.afterEmptySplice = func(int) {
		if hooked++; hooked > 1 {
			return
		}
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err == nil {
			_, err = w.Write(second)
			w.Close()
		}
		if err != nil {
			t.Error(err)
		}
	}
	var res copyResult
	fdtest.Within(t, 20*time.Second, func() {
		res = <-goCopy(context.Background(), dst, src, -1, nil)
		<-fed
	})
	got, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	want := append(first, second...)
	if hooked == 0 {
		t.Fatalf("no splice from the fifo answered 0 (Copy = %d, %v)", res.n, res.err)
	}
	if res.err != nil || res.n != int64(len(want)) || !bytes.Equal(got, want) {
		t.Fatalf("Copy = %d, %v, the file has %d bytes (equal: %v); want %d, nil", res.n, res.err, len(got), bytes.Equal(got, want), len(want))
	}
}
