package pipes_test

import (
	"encoding/json"
	"expvar"
	"fmt"
	"io"
	"log"
	"strings"

	"github.com/pipes-go/pipes"
)

// Stats is a struct of numbers (and one string, RingSetup), so the
// standard library's expvar publishes it in one line: a program that
// imports expvar serves it as JSON on /debug/vars, next to memstats,
// computed afresh for each request. No metrics library is needed.
func ExampleStats_expvar() {
	e, err := pipes.NewEngine()
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()

	// Once per process: Publish panics if the name is taken (the guard
	// is for this example run twice, as by go test -count=2).
	if expvar.Get("pipes") == nil {
		expvar.Publish("pipes", expvar.Func(func() any { return e.Stats() }))
	}

	// A copy the kernel cannot take: neither end has a descriptor.
	e.Copy(io.Discard, strings.NewReader("hello"))

	// What /debug/vars would show under "pipes".
	js := expvar.Get("pipes").String()
	fmt.Println(strings.Contains(js, `"Copies"`))
	var s pipes.Stats
	if err := json.Unmarshal([]byte(js), &s); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("copies %d, bytes %d, userspace %d (no descriptor: %d)\n",
		s.Copies, s.Bytes, s.Userspace, s.UserspaceNoFD)
	// Output:
	// true
	// copies 1, bytes 5, userspace 1 (no descriptor: 1)
}
