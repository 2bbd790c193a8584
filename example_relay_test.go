package pipes_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"time"

	"github.com/pipes-go/pipes"
)

// dialPair returns both ends of a new loopback TCP connection.
func dialPair() (client, server net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			log.Print(err)
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	return client, <-accepted
}

// Relay joins two connections, as a TCP proxy does: here a client's
// connection to the proxy and the proxy's connection to a backend. On
// Linux the bytes go socket -> pipe -> socket with splice(2) and never
// enter the process. The client's half-close reaches the backend as EOF;
// the relay ends when the backend has answered and half-closed too.
func ExampleRelay() {
	client, fromClient := dialPair() // client -> proxy
	toBackend, backend := dialPair() // proxy -> backend
	defer client.Close()
	defer backend.Close()

	go func() { // the backend: reads the request to EOF, answers
		req, _ := io.ReadAll(backend)
		fmt.Fprintf(backend, "pong: %s", req)
		backend.(*net.TCPConn).CloseWrite()
	}()
	go func() { // the client: sends its request, half-closes
		client.Write([]byte("ping"))
		client.(*net.TCPConn).CloseWrite()
	}()

	up, down, err := pipes.Relay(context.Background(), fromClient, toBackend)
	// Relay never closes its ends: that is the caller's.
	fromClient.Close()
	toBackend.Close()
	fmt.Println(up, down, err)

	reply, _ := io.ReadAll(client)
	fmt.Println(string(reply))
	// Output:
	// 4 10 <nil>
	// pong: ping
}

// RelayWith takes options: here the relay ends once nothing has moved in
// either direction for 50 ms.
func ExampleEngine_RelayWith() {
	a, peerA := dialPair()
	b, peerB := dialPair()
	defer func() {
		for _, c := range []net.Conn{a, peerA, b, peerB} {
			c.Close()
		}
	}()

	peerA.Write([]byte("hello"))
	_, _, err := pipes.DefaultEngine().RelayWith(context.Background(), a, b,
		pipes.RelayIdleTimeout(50*time.Millisecond))
	fmt.Println(errors.Is(err, os.ErrDeadlineExceeded))

	got := make([]byte, 5)
	io.ReadFull(peerB, got)
	fmt.Println(string(got))
	// Output:
	// true
	// hello
}

// CopyContext is Copy with a context: it blocks like Copy, and ends when
// the context does, like CopyAsync.
func ExampleCopyContext() {
	var sb strings.Builder
	n, err := pipes.CopyContext(context.Background(), &sb, strings.NewReader("hello, pipes"))
	fmt.Println(n, err, sb.String())

	r, w, err := pipes.New()
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	// Nothing is ever written to w: the copy waits until the deadline.
	n, err = pipes.CopyContext(ctx, io.Discard, r)
	fmt.Println(n, errors.Is(err, context.DeadlineExceeded))
	// Output:
	// 12 <nil> hello, pipes
	// 0 true
}
