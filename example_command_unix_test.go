//go:build unix

package pipes_test

import (
	"fmt"
	"io"
	"log"
	"net"
	"os/exec"

	"github.com/pipes-go/pipes"
)

// A subprocess's output shipped to a socket, as a log shipper does: the
// pipe StdoutPipe makes is spliced into the connection, and the bytes
// never enter this process. Copy returns at the subprocess's EOF; Wait,
// which closes the pipe, comes after it.
func ExampleCopy_subprocess() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	received := make(chan string)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		received <- string(b)
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}

	cmd := exec.Command("printf", `line 1\nline 2\n`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	n, err := pipes.Copy(conn, out) // pipe -> TCP with splice(2) on Linux
	if werr := cmd.Wait(); werr != nil {
		log.Fatal(werr)
	}
	conn.Close()
	fmt.Println(n, err)
	fmt.Print(<-received)
	// Output:
	// 14 <nil>
	// line 1
	// line 2
}
