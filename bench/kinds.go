package main

import (
	"fmt"
	"strings"
)

// kind is an endpoint type of a copy.
type kind string

const (
	kindFile kind = "file"
	kindPipe kind = "pipe"
	kindUnix kind = "unix"
	kindTCP  kind = "tcp"
)

var allKinds = []kind{kindFile, kindPipe, kindUnix, kindTCP}

// pair is a source kind and a destination kind.
type pair struct{ src, dst kind }

func (p pair) String() string { return string(p.src) + "->" + string(p.dst) }

func parsePair(s string) (pair, error) {
	a, b, ok := strings.Cut(s, "->")
	if !ok {
		a, b, ok = strings.Cut(s, "-")
	}
	p := pair{kind(a), kind(b)}
	if !ok || !validKind(p.src) || !validKind(p.dst) {
		return pair{}, fmt.Errorf("bad pair %q: want SRC-DST with kinds file, pipe, unix, tcp", s)
	}
	return p, nil
}

func validKind(k kind) bool {
	for _, v := range allKinds {
		if k == v {
			return true
		}
	}
	return false
}

// Strategy names, in table order.
const (
	stratRing      = "pipes/io_uring"
	stratSplice    = "pipes/splice"
	stratLoop      = "splice loop"
	stratIOCopy    = "io.Copy"
	stratUserspace = "io.Copy/userspace"
)
