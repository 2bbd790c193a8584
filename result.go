package pipes

import (
	"errors"
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
// CopyBatch).
var (
	errNilSource      = errors.New("pipes: nil source")
	errNilDestination = errors.New("pipes: nil destination")
)

// isNil reports a nil interface, or one holding a nil pointer, map,
// slice, channel or function, whose methods would panic.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Chan, reflect.Func, reflect.Interface:
		return rv.IsNil()
	}
	return false
}
