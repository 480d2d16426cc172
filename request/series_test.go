package request_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/request"
)

func guardAlert(alert, reason string) event {
	return event{kind: events.KindAlerted, data: &events.Alerted{Alert: alert, Reason: reason}}
}

// TestNotARequestsHistory: the records that live under an id of their own
// (the guard's alerts, locks, state changes, policy records, checkpoints,
// witness records) have folds of their own (package series); the request
// fold refuses them, in a request's history or opening one, and still
// keeps where the history ends.
func TestNotARequestsHistory(t *testing.T) {
	p := newPeople(t)
	others := []event{
		guardAlert(events.AlertWeakened, "x"),
		guardAlert(events.AlertRestored, "x"),
		{kind: events.KindLock, by: &p.alice, data: &events.Lock{Domain: "acme", Target: events.LockTarget{Type: events.LockPrincipal, Name: "acme/carol"}, Reason: "x"}},
		{kind: events.KindLocked, data: &events.Locked{Target: events.LockTarget{Type: events.LockPrincipal, Name: "acme/carol"}, Reason: "x"}},
		{kind: events.KindState, by: &p.alice, data: &events.State{Domain: "acme", Op: events.StateDelete}},
		{kind: events.KindStated, data: &events.Stated{Op: events.StateDelete}},
		{kind: events.KindPolicy, data: &events.Policy{PolicyDigest: "sha256:p", FlowsDigest: "sha256:f"}},
		{kind: events.KindCheckpoint, data: &events.Checkpoint{Stream: "WRIT", TreeSize: 1, FirstSeq: 1, LastSeq: 1}},
		{kind: events.KindWitnessed, data: &events.Witnessed{Domain: "globex", Seq: 7}},
	}
	for _, ev := range others {
		for _, where := range []struct {
			name   string
			before func(h *history)
		}{
			{"opening a history", func(*history) {}},
			{"in a request's history", func(h *history) { h.add(requested(&p.carol, 0)) }},
		} {
			t.Run(ev.kind.String()+" "+where.name, func(t *testing.T) {
				h := newHistory(t)
				where.before(h)
				before := h.fold()
				r := h.add(ev)
				s, err := request.Apply(before, r)
				assert.ErrorIs(t, err, request.ErrIllegal)
				assert.Equal(t, before.Status, s.Status, "nothing changed")
				assert.Equal(t, r.Seq, s.LastSeq, "the history ends at it all the same")
				assert.Equal(t, r.Digest, s.LastDigest)
			})
		}
	}
}

// TestSeriesRefusalsKept: a refusal in any history, a series' included,
// is where the history ends and what a component answered, for whoever
// appends to it next.
func TestSeriesRefusalsKept(t *testing.T) {
	p := newPeople(t)
	h := newHistory(t)
	h.add(event{kind: events.KindLock, by: &p.dave, data: &events.Lock{Domain: "acme", Target: events.LockTarget{Type: events.LockPrincipal, Name: "acme/carol"}, Reason: "x"}})
	h.add(refused(1, "not-authorized"))
	s, errs := request.Fold(h.records)
	assert.Len(t, errs, 1, "the lock is not a request's")
	assert.Equal(t, map[uint64]string{1: "not-authorized"}, s.Answered)
	assert.Equal(t, uint64(2), s.LastSeq)
	assert.Equal(t, request.StatusNone, s.Status)
}
