package series_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/request"
	"github.com/writ-dev/writ/series"
)

func TestOf(t *testing.T) {
	for _, tt := range []struct {
		first event
		want  series.Kind
	}{
		{requestedEv(), series.KindRequest},
		{junk(events.KindRequested, nil), series.KindRequest},
		{lockAsk(false), series.KindLock},
		{junk(events.KindLock, nil), series.KindLock},
		{stateAsk(events.StateDelete, nil, false), series.KindStateChange},
		{policyEv("a"), series.KindPolicy},
		{checkpoint("WRIT", 1, 1), series.KindCheckpoints},
		{witnessed("globex", 1), series.KindWitness},
		{guardAlert(events.AlertWeakened), series.KindGuard},
		{guardAlert(events.AlertBreakGlass), series.KindRequest},
		{refusedEv(1, "x"), series.KindRequest},
	} {
		t.Run(tt.first.kind.String()+" "+tt.want.String(), func(t *testing.T) {
			assert.Equal(t, tt.want, series.Of(newHistory(t).add(tt.first)))
		})
	}
	// Junk that opens the guard's id is the guard's to judge.
	h := newHistory(t)
	h.id = events.GuardID("acme")
	assert.Equal(t, series.KindGuard, series.Of(h.add(junk(events.KindAlerted, nil))))
}

// TestAny: a history folded by Any is folded by its own fold, and Request
// holds where it ends whatever it records; a request's history folds as
// request.Fold folds it.
func TestAny(t *testing.T) {
	lock := build(t, lockAsk(false), junk(events.KindLocked, nil), refusedEv(2, "not-genuine"))
	lock.add(locked(carol, false))
	a, errs := series.Fold[series.Any](lock.records)
	l, lerrs := series.Fold[series.Lock](lock.records)
	assert.Equal(t, series.KindLock, a.Kind)
	assert.Equal(t, l, a.Lock())
	assert.Equal(t, lerrs, errs)
	assert.Equal(t, l.Tip, a.Tip())
	assert.Equal(t, request.StatusNone, a.Request.Status)
	assert.Equal(t, uint64(4), a.Request.LastSeq, "Request holds where the history ends")
	assert.Equal(t, lock.records[3].Digest, a.Request.LastDigest)
	assert.Equal(t, map[uint64]string{2: "not-genuine"}, a.Request.Answered)
	assert.Equal(t, seriesID, a.Request.ID)

	req := build(t, requestedEv(), lockAsk(false))
	req.records[0].Principal = &alice
	r, rerrs := series.Fold[series.Any](req.records)
	want, werrs := request.Fold(req.records)
	assert.Equal(t, series.KindRequest, r.Kind)
	assert.Equal(t, want, r.Request)
	assert.Equal(t, werrs, rerrs)
	require.Len(t, rerrs, 1, "a lock in a request's history is not a request's")
	assert.ErrorIs(t, rerrs[2], request.ErrIllegal)
	assert.Nil(t, r.Lock().Ask)

	// A request published under a lock's id, chained to the lock: request.Fold
	// alone would take it; the history is the lock's.
	hijack := build(t, lockAsk(false), requestedEv())
	hijack.records[1].Principal = &alice
	hj, herrs := series.Fold[series.Any](hijack.records)
	assert.ErrorIs(t, herrs[2], request.ErrIllegal)
	assert.Equal(t, request.StatusNone, hj.Request.Status)
	assert.Nil(t, hj.Request.Request)

	for _, h := range []*history{
		build(t, stateAsk(events.StateDelete, nil, false), stated(events.StateDelete, nil)),
		build(t, policyEv("a")),
		build(t, checkpoint("WRIT", 1, 1), checkpoint("WRIT", 2, 3)),
		build(t, witnessed("globex", 1)),
		build(t, guardAlert(events.AlertWeakened), guardAlert(events.AlertRestored)),
	} {
		a, errs := series.Fold[series.Any](h.records)
		assert.Empty(t, errs, "%s", a.Kind)
		assert.Equal(t, uint64(len(h.records)), a.Tip().LastSeq, "%s", a.Kind)
	}
}

// TestAfter: a series whose start is gone goes on from the first record
// left, judged by its own fold.
func TestAfter(t *testing.T) {
	h := build(t, checkpoint("WRIT", 1, 1), checkpoint("WRIT", 2, 3), checkpoint("WRIT", 1, 4))
	rest := h.records[1:]
	a := series.After(rest[0])
	a, err := a.Apply(rest[0])
	require.NoError(t, err)
	assert.Equal(t, uint64(2), a.Checkpoints().Last.TreeSize)
	_, err = a.Apply(rest[1])
	assert.ErrorIs(t, err, request.ErrIllegal, "a smaller tree after the first one left")

	// Without After, the first record left does not chain.
	_, err = series.Any{}.Apply(rest[0])
	assert.ErrorIs(t, err, request.ErrBrokenChain)
}
