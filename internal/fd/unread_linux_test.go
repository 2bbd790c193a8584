package fd

import (
	"errors"
	"io"
	"os"
	"testing"
)

// TestUnread moves a file's offset back over bytes a copy read, and
// leaves it where another reader has moved it since.
func TestUnread(t *testing.T) {
	cases := []struct {
		name      string
		at        int64 // the file's offset when Unread runs
		end, n    int64
		want      int64 // the offset after
		wantMoved bool
	}{
		{"at-end", 100, 100, 30, 70, false},
		{"all", 100, 100, 100, 0, false},
		{"moved-past", 150, 100, 30, 150, true},
		{"moved-back", 50, 100, 30, 50, true},
		{"end-unknown", 150, -1, 30, 120, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := os.CreateTemp(t.TempDir(), "f")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write(make([]byte, 200)); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Seek(c.at, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			rc, err := f.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			err = Unread(rc, c.end, c.n)
			if moved := errors.Is(err, ErrOffsetMoved); moved != c.wantMoved || (err != nil && !moved) {
				t.Errorf("Unread = %v, want ErrOffsetMoved: %v", err, c.wantMoved)
			}
			if pos, _ := f.Seek(0, io.SeekCurrent); pos != c.want {
				t.Errorf("offset %d after Unread, want %d", pos, c.want)
			}
		})
	}
	t.Run("closed", func(t *testing.T) {
		f, err := os.CreateTemp(t.TempDir(), "f")
		if err != nil {
			t.Fatal(err)
		}
		rc, err := f.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if err := Unread(rc, 0, 1); err == nil {
			t.Errorf("Unread of a closed file = nil")
		}
	})
}
