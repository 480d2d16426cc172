package series_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/request"
	"github.com/writ-dev/writ/series"
)

func build(t *testing.T, evs ...event) *history {
	t.Helper()
	h := newHistory(t)
	for _, e := range evs {
		h.add(e)
	}
	return h
}

// legal folds a history and fails the test on any record that changed
// nothing.
func legal[S series.Folder[S]](t *testing.T, h *history) S {
	t.Helper()
	s, errs := series.Fold[S](h.records)
	require.Empty(t, errs, "the history is legal")
	return s
}

// refusedBy folds a history whose last record must change nothing, for err.
func refusedBy[S series.Folder[S]](t *testing.T, h *history, err error) {
	t.Helper()
	_, errs := series.Fold[S](h.records)
	last := h.records[len(h.records)-1].Seq
	assert.ErrorIs(t, errs[last], err)
	delete(errs, last)
	assert.Empty(t, errs, "only the last record is refused")
}

func TestLock(t *testing.T) {
	l := legal[series.Lock](t, build(t, lockAsk(false), locked(carol, false)))
	require.NotNil(t, l.Ask)
	require.NotNil(t, l.Done)
	assert.Equal(t, uint64(1), l.AskSeq)
	assert.Equal(t, carol, l.Done.Target)
	assert.False(t, l.Done.Unlock)
	assert.True(t, l.Settled())
	assert.Equal(t, series.Tip{Domain: "acme", ID: seriesID, LastSeq: 2, LastDigest: l.LastDigest}, l.Tip)

	asked := legal[series.Lock](t, build(t, lockAsk(true)))
	assert.NotNil(t, asked.Ask)
	assert.Nil(t, asked.Done)
	assert.False(t, asked.Settled(), "asked, not answered")

	refused := legal[series.Lock](t, build(t, lockAsk(false), refusedEv(1, "not-authorized")))
	assert.Nil(t, refused.Done)
	assert.Equal(t, map[uint64]string{1: "not-authorized"}, refused.Answered)
	assert.True(t, refused.Settled(), "refused is an answer")

	// A forged ask refused: the refusal answers what was sent.
	forged := build(t, junk(events.KindLock, lockAsk(false).data), refusedEv(1, "not-genuine"))
	f, _ := series.Fold[series.Lock](forged.records)
	assert.Nil(t, f.Ask)
	assert.True(t, f.Settled())

	// Junk answered after the ask does not answer the ask.
	other, errs := series.Fold[series.Lock](build(t, lockAsk(false), junk(events.KindRequested, nil),
		event{kind: events.KindRejected, data: &events.Rejected{RefSeq: 2, Code: "invalid", Reason: "no"}}).records)
	assert.Len(t, errs, 1, "the junk changed nothing, its rejection is an answer")
	assert.Equal(t, map[uint64]string{2: "invalid"}, other.Answered)
	assert.False(t, other.Settled(), "the ask is still unanswered")
}

func TestLockRefuses(t *testing.T) {
	other := events.LockTarget{Type: events.LockKey, Name: "UCAROL"}
	for _, tt := range []struct {
		name string
		evs  []event
		err  error
	}{
		{"locked without an ask", []event{locked(carol, false)}, request.ErrIllegal},
		{"locked twice", []event{lockAsk(false), locked(carol, false), locked(carol, false)}, request.ErrIllegal},
		{"a second ask", []event{lockAsk(false), lockAsk(true)}, request.ErrIllegal},
		{"another target than asked", []event{lockAsk(false), locked(other, false)}, request.ErrUnjustified},
		{"unlocked when a lock was asked", []event{lockAsk(false), locked(carol, true)}, request.ErrUnjustified},
		{"a request in a lock's history", []event{lockAsk(false), requestedEv()}, request.ErrIllegal},
		{"a state change in a lock's history", []event{lockAsk(false), stated(events.StateDelete, nil)}, request.ErrIllegal},
		{"locked, forged", []event{lockAsk(false), junk(events.KindLocked, locked(carol, false).data)}, request.ErrInvalid},
		{"locked, off the chain", []event{lockAsk(false), {kind: events.KindLocked, data: locked(carol, false).data, prev: new(string)}}, request.ErrBrokenChain},
	} {
		t.Run(tt.name, func(t *testing.T) { refusedBy[series.Lock](t, build(t, tt.evs...), tt.err) })
	}
}

func TestStateChange(t *testing.T) {
	onCall := map[string]string{"on_call": "alice"}
	set := legal[series.StateChange](t, build(t, stateAsk(events.StateSet, onCall, false), stated(events.StateSet, onCall)))
	require.NotNil(t, set.Done)
	assert.Equal(t, onCall, set.Done.Attrs)
	assert.True(t, set.Settled())

	merged := map[string]string{"on_call": "alice", "incident": "INC-7"}
	m := legal[series.StateChange](t, build(t, stateAsk(events.StateSet, onCall, true), stated(events.StateSet, merged)))
	assert.Equal(t, merged, m.Done.Attrs, "a merge keeps what it did not name")

	del := legal[series.StateChange](t, build(t, stateAsk(events.StateDelete, nil, false), stated(events.StateDelete, nil)))
	assert.Equal(t, events.StateDelete, del.Done.Op)

	refused := legal[series.StateChange](t, build(t, stateAsk(events.StateDelete, nil, false), refusedEv(1, "not-authorized")))
	assert.Nil(t, refused.Done)
	assert.True(t, refused.Settled())
	assert.False(t, legal[series.StateChange](t, build(t, stateAsk(events.StateDelete, nil, false))).Settled())

	for _, tt := range []struct {
		name string
		evs  []event
		err  error
	}{
		{"stated without an ask", []event{stated(events.StateDelete, nil)}, request.ErrIllegal},
		{"stated twice", []event{stateAsk(events.StateDelete, nil, false), stated(events.StateDelete, nil), stated(events.StateDelete, nil)}, request.ErrIllegal},
		{"other attributes than asked", []event{stateAsk(events.StateSet, onCall, false), stated(events.StateSet, merged)}, request.ErrUnjustified},
		{"a merge that drops what was asked", []event{stateAsk(events.StateSet, merged, true), stated(events.StateSet, onCall)}, request.ErrUnjustified},
		{"a deletion with attributes", []event{stateAsk(events.StateDelete, nil, false), stated(events.StateDelete, onCall)}, request.ErrUnjustified},
		{"set when delete was asked", []event{stateAsk(events.StateDelete, nil, false), stated(events.StateSet, onCall)}, request.ErrUnjustified},
		{"a lock in a state change's history", []event{stateAsk(events.StateDelete, nil, false), lockAsk(false)}, request.ErrIllegal},
		{"stated, forged", []event{stateAsk(events.StateDelete, nil, false), junk(events.KindStated, stated(events.StateDelete, nil).data)}, request.ErrInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) { refusedBy[series.StateChange](t, build(t, tt.evs...), tt.err) })
	}
}

func TestPolicyRecord(t *testing.T) {
	p := legal[series.PolicyRecord](t, build(t, policyEv("a")))
	require.NotNil(t, p.Record)
	assert.Equal(t, "sha256:a", p.Record.PolicyDigest)

	refusedBy[series.PolicyRecord](t, build(t, policyEv("a"), policyEv("a")), request.ErrIllegal)
	refusedBy[series.PolicyRecord](t, build(t, policyEv("a"), requestedEv()), request.ErrIllegal)
	refusedBy[series.PolicyRecord](t, build(t, junk(events.KindPolicy, policyEv("a").data)), request.ErrInvalid)
	forged, _ := series.Fold[series.PolicyRecord](build(t, junk(events.KindPolicy, policyEv("evil").data)).records)
	assert.Nil(t, forged.Record, "a forged policy record is no record")
}

func TestCheckpoints(t *testing.T) {
	c := legal[series.Checkpoints](t, build(t, checkpoint("WRIT", 10, 10), checkpoint("WRIT", 10, 11), checkpoint("WRIT", 25, 27)))
	require.NotNil(t, c.Last)
	assert.Equal(t, uint64(25), c.Last.TreeSize)

	for _, tt := range []struct {
		name string
		next event
		err  error
	}{
		{"a smaller tree", checkpoint("WRIT", 9, 12), request.ErrIllegal},
		{"an earlier last message", checkpoint("WRIT", 11, 9), request.ErrIllegal},
		{"another stream", checkpoint("OTHER", 11, 12), request.ErrIllegal},
		{"not a checkpoint", witnessed("globex", 1), request.ErrIllegal},
		{"forged", junk(events.KindCheckpoint, checkpoint("WRIT", 99, 99).data), request.ErrInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			refusedBy[series.Checkpoints](t, build(t, checkpoint("WRIT", 10, 10), tt.next), tt.err)
		})
	}
}

func TestWitness(t *testing.T) {
	w := legal[series.Witness](t, build(t, witnessed("globex", 5), witnessed("globex", 9)))
	require.NotNil(t, w.Last)
	assert.Equal(t, uint64(9), w.Last.Seq)

	refusedBy[series.Witness](t, build(t, witnessed("globex", 5), witnessed("globex", 5)), request.ErrIllegal)
	refusedBy[series.Witness](t, build(t, witnessed("globex", 5), witnessed("initech", 9)), request.ErrIllegal)
	refusedBy[series.Witness](t, build(t, witnessed("globex", 5), checkpoint("WRIT", 1, 1)), request.ErrIllegal)
	refusedBy[series.Witness](t, build(t, witnessed("globex", 5), junk(events.KindWitnessed, witnessed("globex", 9).data)), request.ErrInvalid)
}

// TestGuard: the guard's alerts, weakened then restored, any number of
// times; a restored answers a weakened; nothing else in its history.
func TestGuard(t *testing.T) {
	g := legal[series.Guard](t, build(t, guardAlert(events.AlertWeakened), guardAlert(events.AlertWeakened),
		guardAlert(events.AlertRestored), guardAlert(events.AlertWeakened)))
	require.NotNil(t, g.Last)
	assert.Equal(t, events.AlertWeakened, g.Last.Alert)

	for _, tt := range []struct {
		name string
		evs  []event
	}{
		{"restored with nothing weakened", []event{guardAlert(events.AlertRestored)}},
		{"restored twice", []event{guardAlert(events.AlertWeakened), guardAlert(events.AlertRestored), guardAlert(events.AlertRestored)}},
		{"a request in the guard's", []event{guardAlert(events.AlertWeakened), requestedEv()}},
		{"a break-glass alert in the guard's", []event{guardAlert(events.AlertWeakened), guardAlert(events.AlertBreakGlass)}},
	} {
		t.Run(tt.name, func(t *testing.T) { refusedBy[series.Guard](t, build(t, tt.evs...), request.ErrIllegal) })
	}
	refusedBy[series.Guard](t, build(t, guardAlert(events.AlertWeakened), junk(events.KindAlerted, guardAlert(events.AlertRestored).data)), request.ErrInvalid)
}

// junkChangesNothing: a message that is not trustworthy, or that does not
// chain to the history, inserted anywhere in a legal history, changes
// nothing but where the history ends; what follows it, chained to it as a
// writer would chain it, folds as before.
func junkChangesNothing[S series.Folder[S]](t *testing.T, tip func(*S) *series.Tip, evs ...func() event) {
	t.Helper()
	for at := range len(evs) + 1 {
		for _, bad := range []string{"forged", "off the chain"} {
			h := newHistory(t)
			var want S
			for i := range len(evs) + 1 {
				if i == at {
					before, _ := series.Fold[S](h.records)
					e := evs[min(at, len(evs)-1)]()
					if bad == "forged" {
						e.err = events.ErrBadSignature
					} else {
						e.prev = new(string)
						*e.prev = "sha256:elsewhere"
					}
					r := h.add(e)
					after, err := before.Apply(r)
					assert.Error(t, err, "%s at %d", bad, at)
					assert.Equal(t, r.Seq, tip(&after).LastSeq, "the history ends at it")
					*tip(&after) = *tip(&before)
					assert.Equal(t, before, after, "%s at %d changes nothing else", bad, at)
				}
				if i < len(evs) {
					h.add(evs[i]())
				}
			}
			got, errs := series.Fold[S](h.records)
			assert.Len(t, errs, 1, "%s at %d: only the bad record changed nothing", bad, at)
			// The same history without the bad record folds to the same
			// content.
			clean := newHistory(t)
			for _, e := range evs {
				clean.add(e())
			}
			want, _ = series.Fold[S](clean.records)
			g, w := got, want
			*tip(&g), *tip(&w) = series.Tip{}, series.Tip{}
			assert.Equal(t, summary(w), summary(g), "%s at %d", bad, at)
		}
	}
}

// summary is a fold's content without sequences and chain links, which
// an inserted record shifts.
func summary(s any) any {
	switch s := s.(type) {
	case series.Lock:
		return []any{s.Ask != nil, s.Done != nil}
	case series.StateChange:
		return []any{s.Ask != nil, s.Done != nil}
	case series.PolicyRecord:
		return s.Record != nil
	case series.Checkpoints:
		return s.Last.TreeSize
	case series.Witness:
		return s.Last.Seq
	case series.Guard:
		return s.Last.Alert
	}
	return s
}

func TestJunkChangesNothing(t *testing.T) {
	t.Run("lock", func(t *testing.T) {
		junkChangesNothing(t, func(s *series.Lock) *series.Tip { return &s.Tip },
			func() event { return lockAsk(false) }, func() event { return locked(carol, false) })
	})
	t.Run("state change", func(t *testing.T) {
		junkChangesNothing(t, func(s *series.StateChange) *series.Tip { return &s.Tip },
			func() event { return stateAsk(events.StateDelete, nil, false) }, func() event { return stated(events.StateDelete, nil) })
	})
	t.Run("policy record", func(t *testing.T) {
		junkChangesNothing(t, func(s *series.PolicyRecord) *series.Tip { return &s.Tip },
			func() event { return policyEv("a") })
	})
	t.Run("checkpoints", func(t *testing.T) {
		junkChangesNothing(t, func(s *series.Checkpoints) *series.Tip { return &s.Tip },
			func() event { return checkpoint("WRIT", 3, 3) }, func() event { return checkpoint("WRIT", 8, 9) })
	})
	t.Run("witness", func(t *testing.T) {
		junkChangesNothing(t, func(s *series.Witness) *series.Tip { return &s.Tip },
			func() event { return witnessed("globex", 3) }, func() event { return witnessed("globex", 8) })
	})
	t.Run("guard", func(t *testing.T) {
		junkChangesNothing(t, func(s *series.Guard) *series.Tip { return &s.Tip },
			func() event { return guardAlert(events.AlertWeakened) }, func() event { return guardAlert(events.AlertRestored) })
	})
}
