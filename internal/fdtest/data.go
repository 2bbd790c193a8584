package fdtest

import "math/rand/v2"

// Random returns n pseudo-random bytes, the same ones for the same n: data
// a copy must carry byte for byte, with no period a misplaced offset
// could hide behind, reproducible from run to run.
func Random(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)}).Read(b)
	return b
}
