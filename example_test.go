package pipes_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	"github.com/pipes-go/pipes"
)

// Copy is a drop-in for io.Copy. Here a file is copied into a pipe made by
// New; on Linux the bytes move with splice(2) and never enter the process.
func ExampleCopy() {
	f, err := os.CreateTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	f.WriteString("hello, pipes\n")
	f.Seek(0, io.SeekStart)

	r, w, err := pipes.New()
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	go func() {
		defer w.Close()
		if _, err := pipes.Copy(w, f); err != nil {
			log.Print(err)
		}
	}()
	b, err := io.ReadAll(r)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(b))
	// Output: hello, pipes
}

// CopyAsync returns at once; the Future reports the result. Cancelling the
// context stops the copy.
func ExampleCopyAsync() {
	r, w, err := pipes.New()
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	// Nothing is ever written to w: the copy waits until the deadline.
	f := pipes.CopyAsync(ctx, io.Discard, r)
	n, err := f.Wait()
	fmt.Println(n, err != nil)
	r.Close()
	// Output: 0 true
}

// An Engine is configured with options; Stats makes its work visible.
func ExampleNewEngine() {
	e, err := pipes.NewEngine(
		pipes.WithPipeSize(256<<10),
		pipes.WithMaxPipes(8),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()

	var sb strings.Builder
	n, err := e.Copy(&sb, strings.NewReader("no descriptor here: a userspace copy"))
	fmt.Println(n, err, sb.String())
	fmt.Println(e.Stats().Copies)
	// Output:
	// 36 <nil> no descriptor here: a userspace copy
	// 1
}
