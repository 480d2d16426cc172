package ops

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
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
		probe.End(3, consumers.Handled{Outcome: consumers.Acked, Delivered: 2, Took: time.Millisecond, Age: time.Minute})
		c.Appended(events.KindGranted)
	})
	assert.Zero(t, allocs)
}

// A redelivery counts as late when the message was stored at least the ack
// wait before it was taken again: only then can it be one a consumer took
// and lost. The server's prompt hand-on of a delivery that reached no one
// is a redelivery, not a late one.
func TestLateRedeliveriesAreOlderThanTheAckWait(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	o, err := New(Options{NC: e.NC, Domain: e.Domain})
	require.NoError(t, err)
	probe := o.Consumer(consumers.Durable{Name: "issuer"}, 1)
	for _, h := range []consumers.Handled{
		{Outcome: consumers.Acked, Delivered: 1, Age: time.Minute},                          // first delivery, however old
		{Outcome: consumers.Acked, Delivered: 2, Age: time.Millisecond},                     // handed on at once
		{Outcome: consumers.Acked, Delivered: 2, Age: consumers.AckWait - time.Millisecond}, // naked, then taken
		{Outcome: consumers.Acked, Delivered: 2, Age: consumers.AckWait},                    // waited out the ack wait
		{Outcome: consumers.Retried, Delivered: 3, Age: time.Minute},
	} {
		probe.Begin(0, time.Now())
		probe.End(0, h)
	}
	assert.Equal(t, 4.0, count(t, o.m.redelivered.WithLabelValues("issuer")))
	assert.Equal(t, 2.0, count(t, o.m.late.WithLabelValues("issuer")))
}

func count(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}
