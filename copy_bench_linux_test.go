package pipes

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkCopySmallFileToSocket measures the per-copy cost of a single
// small copy from a cached file to a unix socket: the engine (sendfile,
// after classifying both ends) against io.Copy (Go's sendfile path).
func BenchmarkCopySmallFileToSocket(b *testing.B) {
	const size = 64 << 10
	path := filepath.Join(b.TempDir(), "src")
	if err := os.WriteFile(path, randomData(size), 0o600); err != nil {
		b.Fatal(err)
	}
	e, err := NewEngine()
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	for _, bc := range []struct {
		name string
		copy func(io.Writer, io.Reader) (int64, error)
	}{{"pipes", e.Copy}, {"io.Copy", io.Copy}} {
		b.Run(fmt.Sprintf("%s/size=%d", bc.name, size), func(b *testing.B) {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			a, r := unixPair(b)
			defer a.Close()
			defer r.Close()
			go io.Copy(io.Discard, r)
			b.SetBytes(size)
			for b.Loop() {
				f.Seek(0, io.SeekStart)
				if n, err := bc.copy(a, f); n != size || err != nil {
					b.Fatalf("copy = (%d, %v)", n, err)
				}
			}
		})
	}
}
