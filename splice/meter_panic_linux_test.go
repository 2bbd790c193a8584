//go:build linux

package splice

import (
	"context"
	"testing"

	"github.com/pipes-go/pipes/internal/fdtest"
)

type panicMeter struct{}

func (panicMeter) Add(int64) int64 { panic("meter panics") }

// TestMeterPanic: a panic in the destination's Meter reaches Copy's
// caller, and the copy has released its pipe first: the pool counts
// none in use, and no descriptor is left open. For every pair of
// descriptor kinds.
func TestMeterPanic(t *testing.T) {
	fdtest.Check(t)
	data := make([]byte, 300000)
	for _, sk := range srcKinds {
		for _, dk := range dstKinds {
			t.Run(sk.name+"-"+dk.name, func(t *testing.T) {
				pool := NewPool(0, 4)
				defer pool.Close()
				s := sk.make(t, data, false)
				d := dk.make(t)
				se := endOf(t, s.conn, true)
				de := endOf(t, d.conn, false)
				de.Meter = panicMeter{}
				var recovered any
				func() {
					defer func() { recovered = recover() }()
					Copy(context.Background(), de, se, -1, pool)
				}()
				s.close()
				d.finish()
				if recovered != "meter panics" {
					t.Errorf("recovered %v, want the Meter's panic", recovered)
				}
				if st := pool.Stats(); st.InUse != 0 {
					t.Errorf("pool after the panic: %+v, want no pipe in use", st)
				}
			})
		}
	}
}
