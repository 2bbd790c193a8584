package pipes

import "errors"

// ErrCopierStopped is returned by Copier.Add once the copier has stopped:
// its source reached EOF or failed, or its context ended.
var ErrCopierStopped = errors.New("pipes: copier stopped")
