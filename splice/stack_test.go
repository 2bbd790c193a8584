//go:build linux

package splice

import "runtime"

func runtimeStack(buf []byte) int { return runtime.Stack(buf, true) }
