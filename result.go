package pipes

import (
	"fmt"
	"io"
	"os"
	"reflect"
)

// Result is the outcome of one copy of a FanOut or a CopyBatch.
type Result struct {
	// Written is the number of bytes that reached the destination.
	Written int64
	// Err is nil if the destination received everything up to the end
	// of the source, and else the first error met, as io.Copy reports it.
	Err error
}

// errNilSource and errNilDestination report nil arguments (FanOut,
// CopyBatch, and the copies, whose Read or Write of one would panic).
// They wrap os.ErrInvalid, as io.Copy's error for a nil *os.File does.
var (
	errNilSource      = fmt.Errorf("pipes: nil source: %w", os.ErrInvalid)
	errNilDestination = fmt.Errorf("pipes: nil destination: %w", os.ErrInvalid)
)

// nilReader reports a source that is nil or holds a nil pointer, also
// behind the wrappers the engine takes off (*io.LimitedReader,
// *RateLimitedReader): its Read would panic.
func nilReader(r io.Reader) bool {
	for range 8 {
		if isNil(r) {
			return true
		}
		switch x := r.(type) {
		case *io.LimitedReader:
			r = x.R
		case *RateLimitedReader:
			r = x.R
		default:
			return false
		}
	}
	return false
}

// isNil reports a nil interface, or one holding a nil pointer, channel
// or function, whose methods would panic (or, a channel's, block
// forever). A nil map or slice is not nil here: it is an empty value
// whose methods may work (a nil slice of writers is an empty list of
// them), and a copy uses it as io.Copy does.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Chan, reflect.Func:
		return rv.IsNil()
	}
	return false
}
