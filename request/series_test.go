package request_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/request"
)

func guardAlert(alert, reason string) event {
	return event{kind: events.KindAlerted, data: &events.Alerted{Alert: alert, Reason: reason}}
}

// TestGuardSeries: the guard's alerts live under an id of their own,
// weakened then restored, any number of times; a restored answers a
// weakened; they never mix with a request's events.
func TestGuardSeries(t *testing.T) {
	h := newHistory(t)
	h.add(guardAlert(events.AlertWeakened, "stream WRIT: max age is 2s, want unlimited"))
	h.add(guardAlert(events.AlertWeakened, "stream WRIT: max age is 2s, want unlimited; consumer writ-issuer-acme: it is paused"))
	h.add(guardAlert(events.AlertRestored, "every stream, bucket and consumer is as Writ needs it"))
	h.add(guardAlert(events.AlertWeakened, "bucket writ-locks: it is missing"))
	s := h.fold()
	require.NotNil(t, s.Guard)
	assert.Equal(t, events.AlertWeakened, s.Guard.Alert)
	assert.Equal(t, request.StatusNone, s.Status)

	p := newPeople(t)
	refuse := []struct {
		name   string
		before func(h *history)
		ev     event
	}{
		{"restored with nothing weakened", func(*history) {}, guardAlert(events.AlertRestored, "x")},
		{"restored twice", func(h *history) {
			h.add(guardAlert(events.AlertWeakened, "x"))
			h.add(guardAlert(events.AlertRestored, "x"))
		}, guardAlert(events.AlertRestored, "x")},
		{"in a request's history", func(h *history) { h.add(requested(&p.carol, 0)) }, guardAlert(events.AlertWeakened, "x")},
		{"a request in the guard's", func(h *history) { h.add(guardAlert(events.AlertWeakened, "x")) }, requested(&p.carol, 0)},
		{"a break-glass alert in the guard's", func(h *history) { h.add(guardAlert(events.AlertWeakened, "x")) }, guardAlert(events.AlertBreakGlass, "x")},
	}
	for _, tt := range refuse {
		t.Run(tt.name, func(t *testing.T) {
			h := newHistory(t)
			tt.before(h)
			_, err := request.Apply(h.fold(), h.add(tt.ev))
			assert.ErrorIs(t, err, request.ErrIllegal)
		})
	}
}
