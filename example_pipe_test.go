package pipes_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"strings"

	"github.com/pipes-go/pipes"
)

// New makes a pipe whose ends splice: PipeWriter.ReadFrom moves bytes
// from any descriptor into the pipe without copying them through the
// process (a strings.Reader has none, so this one is copied in userspace).
func ExampleNew() {
	r, w, err := pipes.New()
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	go func() {
		defer w.Close()
		w.ReadFrom(strings.NewReader("through the pipe\n"))
	}()
	b, _ := io.ReadAll(r)
	fmt.Print(string(b))
	// Output: through the pipe
}

// A Copier fans one pipe out to many with tee(2); writers may join while
// it runs, and one that fails is evicted without stopping the others.
func ExampleNewCopier() {
	src, feed, err := pipes.New()
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	var outs []*pipes.PipeReader
	var ins []*pipes.PipeWriter
	for i := 0; i < 3; i++ {
		r, w, err := pipes.New()
		if err != nil {
			log.Fatal(err)
		}
		outs, ins = append(outs, r), append(ins, w)
	}
	c, err := pipes.NewCopier(context.Background(), src, ins...)
	if err != nil {
		log.Fatal(err)
	}
	feed.Write([]byte("one source, three readers\n"))
	feed.Close()
	if err := c.Wait(); err != nil {
		log.Fatal(err)
	}
	for i, r := range outs {
		ins[i].Close() // the Copier never closes its writers
		b, _ := io.ReadAll(r)
		r.Close()
		fmt.Print(i, ": ", string(b))
	}
	// Output:
	// 0: one source, three readers
	// 1: one source, three readers
	// 2: one source, three readers
}
