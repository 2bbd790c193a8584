//go:build !linux

package pipes

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
)

// Copier copies everything written to one pipe to many. Off Linux there is
// no tee(2): it reads each chunk into a userspace buffer and writes it to
// every writer, evicting writers whose Write fails.
type Copier struct {
	ctx     context.Context
	r       *PipeReader
	mu      sync.Mutex
	writers []*PipeWriter
	stopped bool
	err     error
	done    chan struct{}
}

// NewCopier starts copying from r to writers until r reaches EOF or ctx
// ends (noticed at the next read).
func NewCopier(ctx context.Context, r *PipeReader, writers ...*PipeWriter) (*Copier, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if r == nil {
		return nil, errors.New("pipes: NewCopier: nil reader")
	}
	c := &Copier{ctx: ctx, r: r, writers: slices.Clone(writers), done: make(chan struct{})}
	go c.run()
	return c, nil
}

// Add adds a writer; it fails with ErrCopierStopped once the copier stopped.
func (c *Copier) Add(w *PipeWriter) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return ErrCopierStopped
	}
	c.writers = append(c.writers, w)
	return nil
}

// Writers returns how many writers the copier is copying to.
func (c *Copier) Writers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.writers)
}

// Wait blocks until the copier stops; nil means the source reached EOF.
func (c *Copier) Wait() error {
	<-c.done
	return c.err
}

func (c *Copier) run() {
	buf := make([]byte, 32<<10)
	var err error
	for {
		if err = c.ctx.Err(); err != nil {
			break
		}
		n, rerr := c.r.Read(buf)
		if n > 0 {
			c.mu.Lock()
			c.writers = slices.DeleteFunc(c.writers, func(w *PipeWriter) bool {
				_, werr := w.Write(buf[:n])
				return werr != nil
			})
			c.mu.Unlock()
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	c.mu.Lock()
	c.stopped, c.err = true, err
	c.mu.Unlock()
	close(c.done)
}
