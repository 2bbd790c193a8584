package pipes_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"github.com/pipes-go/pipes"
)

// Future.Written reports the bytes a copy has delivered so far, counted
// in the engine's copy loop: no wrapper around the ends, so the copy
// keeps its kernel path.
func ExampleFuture_Written() {
	client, server := dialPair()
	defer server.Close()
	f := pipes.CopyAsync(context.Background(), io.Discard, server)
	io.Copy(client, strings.NewReader(strings.Repeat("x", 1<<20)))
	client.Close()
	f.Wait()
	fmt.Println(f.Written())
	// Output: 1048576
}

// RelayProgress gives a relay's live byte counts, for a dashboard or a
// log line while it runs.
func ExampleRelayProgress() {
	client, fromClient := dialPair()
	toBackend, backend := dialPair()
	defer client.Close()
	defer backend.Close()
	go func() {
		io.Copy(io.Discard, backend)
		backend.Write([]byte("pong"))
		backend.(interface{ CloseWrite() error }).CloseWrite()
	}()
	go func() {
		client.Write([]byte("ping!"))
		client.(interface{ CloseWrite() error }).CloseWrite()
		io.Copy(io.Discard, client)
	}()
	var up, down atomic.Int64
	pipes.DefaultEngine().RelayWith(context.Background(), fromClient, toBackend, pipes.RelayProgress(&up, &down))
	fromClient.Close()
	toBackend.Close()
	fmt.Println(up.Load(), down.Load())
	// Output: 5 4
}
