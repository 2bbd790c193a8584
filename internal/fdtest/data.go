package fdtest

import (
	"io"
	"math/rand/v2"
)

// Random returns n pseudo-random bytes, the same ones for the same n: data
// a copy must carry byte for byte, with no period a misplaced offset
// could hide behind, reproducible from run to run.
func Random(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)}).Read(b)
	return b
}

// WriteAndClose writes data to w and closes it, in a goroutine (a
// source's feeder); the channel it returns is closed once both are done.
func WriteAndClose(w io.WriteCloser, data []byte) <-chan struct{} {
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		w.Write(data)
		w.Close()
	}()
	return fed
}

// ReadInPieces reads r piece bytes a call until a read fails (EOF), in
// a goroutine, and then sends all it read on the channel it returns.
// The size of the reads matters where the reader sees messages (a
// packet-mode pipe drops the rest of a packet a read is too short for)
// or paces its peer (small reads of a socket).
func ReadInPieces(r io.Reader, piece int) <-chan []byte {
	got := make(chan []byte, 1)
	go func() {
		var b []byte
		buf := make([]byte, piece)
		for {
			n, err := r.Read(buf)
			b = append(b, buf[:n]...)
			if err != nil {
				break
			}
		}
		got <- b
	}()
	return got
}
