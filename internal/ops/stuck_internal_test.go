package ops

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/writtest"
)

// A handler that keeps a message far past the handling timeout ignores its
// context: the process no longer does its work, and says so.
func TestStuckHandlerIsUnhealthy(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	o, err := New(Options{NC: e.NC, Domain: e.Domain})
	require.NoError(t, err)
	d := consumers.Durable{Component: "policy", Name: "policy", Stream: "WRIT", Consumer: "writ-policy-acme"}
	o.Expect([]string{"policy"}, []consumers.Durable{d})
	o.Component("policy").Running(true)
	probe := o.Consumer(d, 2)
	probe.Loop(consumers.LoopConsuming)
	require.True(t, o.Health().OK, o.Health().Problems)

	probe.Begin(1, time.Now().Add(-StuckAfter-time.Second))
	h := o.Health()
	require.False(t, h.OK)
	assert.True(t, strings.HasPrefix(h.Problems[0], "consumer policy: a handler has held a message for "), h.Problems)

	probe.End(1, consumers.Handled{Outcome: consumers.Retried, Delivered: 2, Took: time.Minute})
	assert.True(t, o.Health().OK, o.Health().Problems)
}

// The probes are on every message's path: after the first use of a label,
// they allocate nothing.
func TestProbesDoNotAllocate(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	o, err := New(Options{NC: e.NC, Domain: e.Domain})
	require.NoError(t, err)
	probe := o.Consumer(consumers.Durable{Name: "issuer"}, 4)
	c := o.Component("issuer")
	c.Appended(events.KindGranted)
	start := time.Now()
	allocs := testing.AllocsPerRun(100, func() {
		probe.Begin(3, start)
		probe.End(3, consumers.Handled{Outcome: consumers.Acked, Delivered: 2, Took: time.Millisecond})
		c.Appended(events.KindGranted)
	})
	assert.Zero(t, allocs)
}
