package request_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/request"
)

// leadThenSecurity: one SRE lead within 30 minutes, then one of security
// within an hour of that; the first stage escalates to managers after 10.
func leadThenSecurity() events.Flow {
	return events.Flow{Name: "lead-then-security", Stages: []events.Stage{
		{Name: "lead", Groups: []string{"sre-leads"}, Required: 1, DeadlineSeconds: 1800,
			Escalate: &events.Escalation{AfterSeconds: 600, Groups: []string{"managers"}}},
		{Name: "security", Groups: []string{"security"}, Required: 1, DeadlineSeconds: 3600},
	}}
}

func TestStagesInOrder(t *testing.T) {
	p := newPeople(t)
	sec := principal(t, "sam", "security")
	h := newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(review(0, leadThenSecurity()))
	s := h.fold()
	assert.Equal(t, deadline, s.Deadline(), "stage one's deadline is the evaluation's")
	assert.ErrorIs(t, s.CanVote(sec), request.ErrNotEligible, "security's stage is not open yet")

	vote := h.vote(&p.alice, true, "")
	vote.at = t0.Add(5 * time.Minute)
	h.add(vote)
	s = h.fold()
	ps := s.Progress()
	require.Len(t, ps, 1)
	assert.Equal(t, 1, ps[0].Stage, "the lead stage is satisfied")
	assert.Equal(t, t0.Add(5*time.Minute).Add(time.Hour), s.Deadline(), "the security stage has its own deadline from when it opened")
	assert.ErrorIs(t, s.CanVote(p.bob), request.ErrNotEligible, "leads are done")
	require.NoError(t, s.CanVote(sec))
	assert.Equal(t, events.KindNone, request.Next(s, t0.Add(6*time.Minute)).Kind)

	h.add(h.vote(&sec, true, ""))
	s = h.fold()
	assert.Equal(t, events.KindApproved, request.Next(s, t0.Add(7*time.Minute)).Kind)
}

func TestApproverCountsOnceAcrossStages(t *testing.T) {
	p := newPeople(t)
	flow := events.Flow{Name: "two-lead-stages", Stages: []events.Stage{
		{Name: "one", Groups: []string{"sre-leads"}, Required: 1, DeadlineSeconds: 1800},
		{Name: "two", Groups: []string{"sre-leads"}, Required: 1, DeadlineSeconds: 1800},
	}}
	h := newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(review(0, flow))
	h.add(h.vote(&p.alice, true, ""))
	s := h.fold()
	assert.ErrorIs(t, s.CanVote(p.alice), request.ErrDuplicateVote, "alice counted in stage one")
	require.NoError(t, s.CanVote(p.bob))

	flow.RepeatApprovers = true
	h = newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(review(0, flow))
	h.add(h.vote(&p.alice, true, ""))
	s = h.fold()
	require.NoError(t, s.CanVote(p.alice), "the flow lets approvers repeat")
	h.add(h.vote(&p.alice, true, ""))
	s = h.fold()
	assert.Equal(t, events.KindApproved, request.Next(s, t0).Kind)
}

func TestAllGroups(t *testing.T) {
	p := newPeople(t)
	sec := principal(t, "sam", "security")
	flow := events.Flow{Name: "both", Stages: []events.Stage{
		{Groups: []string{"sre-leads", "security"}, AllGroups: true, Required: 2, DeadlineSeconds: 1800},
	}}
	h := newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(review(0, flow))
	h.add(h.vote(&p.alice, true, ""))
	h.add(h.vote(&p.bob, true, ""))
	s := h.fold()
	assert.Equal(t, events.KindNone, request.Next(s, t0).Kind, "two leads, but security has not approved")
	h.add(h.vote(&sec, true, ""))
	s = h.fold()
	assert.Equal(t, events.KindApproved, request.Next(s, t0).Kind)
}

func TestEscalationAddsApprovers(t *testing.T) {
	p := newPeople(t)
	manager := principal(t, "mia", "managers")
	h := newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(review(0, leadThenSecurity()))
	s := h.fold()
	start := s.EvaluatedAt
	assert.ErrorIs(t, s.CanVote(manager), request.ErrNotEligible)
	assert.Equal(t, start.Add(10*time.Minute), s.NextDue(), "the escalation comes before the deadline")
	assert.Equal(t, events.KindNone, request.Next(s, start.Add(9*time.Minute)).Kind)

	d := request.Next(s, start.Add(10*time.Minute))
	require.Equal(t, events.KindEscalated, d.Kind)
	esc := d.Data.(*events.Escalated)
	assert.Equal(t, []string{"managers"}, esc.Groups)

	early := event{kind: events.KindEscalated, data: &events.Escalated{Flow: esc.Flow, Stage: 0, Groups: esc.Groups}, at: start.Add(time.Minute)}
	_, err := request.Apply(s, h.add(early))
	assert.ErrorIs(t, err, request.ErrUnjustified, "not before its delay")

	h = newHistory(t)
	h.add(requested(&p.carol, 0))
	h.add(review(0, leadThenSecurity()))
	h.add(event{kind: events.KindEscalated, data: &events.Escalated{Flow: esc.Flow, Stage: 0, Groups: esc.Groups}, at: start.Add(10 * time.Minute)})
	s = h.fold()
	require.NoError(t, s.CanVote(manager), "escalated: managers may answer stage one")
	assert.Equal(t, deadline, s.NextDue(), "next comes the deadline")
	assert.Equal(t, events.KindExpired, request.Next(s, deadline).Kind)
}
