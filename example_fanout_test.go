package pipes_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pipes-go/pipes"
)

// FanOut sends one file to many connections, reading it once. Here three
// in-process connections receive the same bytes (net.Pipe has no
// descriptor: they go through a userspace buffer); to sockets, on Linux,
// they move from the file's page cache without entering the process.
// FanOutEvictAfter drops a reader that stops reading instead of letting it
// hold the others up.
func ExampleFanOut() {
	f, err := os.CreateTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	f.WriteString("one file, read once, sent to every connection\n")
	f.Seek(0, io.SeekStart)

	var dsts []io.Writer
	var wg sync.WaitGroup
	got := make([]string, 3)
	for i := range got {
		a, b := net.Pipe() // stands for an accepted *net.TCPConn
		defer a.Close()
		dsts = append(dsts, a)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var sb strings.Builder
			io.Copy(&sb, b)
			got[i] = sb.String()
		}()
	}
	results := pipes.FanOut(context.Background(), f, dsts, pipes.FanOutEvictAfter(5*time.Second))
	for i, r := range results {
		if r.Err != nil {
			log.Printf("destination %d: %v", i, r.Err)
		}
		dsts[i].(net.Conn).Close()
	}
	wg.Wait()
	for i, s := range got {
		fmt.Printf("%d: %d bytes, %q\n", i, results[i].Written, strings.TrimSpace(s))
	}
	// Output:
	// 0: 46 bytes, "one file, read once, sent to every connection"
	// 1: 46 bytes, "one file, read once, sent to every connection"
	// 2: 46 bytes, "one file, read once, sent to every connection"
}
