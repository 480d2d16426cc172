package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/request"
)

var (
	dave     = identity.Principal{Domain: "acme", Name: "dave", Key: "UDAVE", Groups: []string{"team-leads"}}
	securers = identity.Principal{Domain: "acme", Name: "erin", Key: "UERIN", Groups: []string{"security"}}
)

// withVotes is s with votes cast a minute apart from modelNow.
func withVotes(s request.State, approve bool, by ...identity.Principal) request.State {
	for i, p := range by {
		s.Votes = append(s.Votes, request.Vote{Voter: p, Approve: approve, Seq: uint64(10 + i), At: modelNow.Add(time.Duration(i+1) * time.Minute)})
	}
	return s
}

// request --wait: once every flow is done the request waits for its
// decision with nothing due, and no deadline line is printed for it.
func TestWaitPrintsNoDeadlineOnceTheFlowsAreDone(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out)
	s := pendingState("r1")
	p.observe(s, modelNow)
	require.Contains(t, out.String(), "deadline: ")
	s = withVotes(s, true, alice)
	p.observe(s, modelNow.Add(time.Minute)) // stage two open: its deadline
	s = withVotes(s, true, securers)
	require.True(t, s.Progress()[0].Done())
	require.Equal(t, request.StatusPending, s.Status, "the decision is still to come")
	p.observe(s, modelNow.Add(2*time.Minute))
	assert.Contains(t, out.String(), "flow done: lead-then-security: all 2 stage(s) approved")
	assert.NotContains(t, out.String(), "(in -)")
	assert.Equal(t, 2, strings.Count(out.String(), "deadline: "), "one for each stage that opened:\n%s", out.String())
}

// A stage in all-groups mode with its number of approvals, all from one
// group, still waits: it says for which group, not only "2 of 2".
func TestAllGroupsStageSaysWhatItWaitsFor(t *testing.T) {
	s := pendingState("r2")
	s.Evaluation.Flows = []events.Flow{{Name: "leads-and-security", Stages: []events.Stage{
		{Name: "both", Groups: []string{"team-leads", "security"}, Required: 2, AllGroups: true, DeadlineSeconds: 600},
	}}}
	s = withVotes(s, true, alice, dave)
	require.False(t, s.Progress()[0].Done())
	assert.Equal(t, []string{"security"}, s.Progress()[0].MissingGroups(s.Domain))

	want := "leads-and-security: stage 1/1 'both', 2 of 2 from team-leads|security (each group; still none from security)"
	assert.Equal(t, want, flowSummary(s))
	var show bytes.Buffer
	v := viewOf(s, nil)
	writeShow(&show, v, modelNow)
	assert.Contains(t, show.String(), "each group; still none from security")
	assert.Equal(t, []string{"security"}, v.Flows[0].Stages[0].Missing)

	s = withVotes(s, true, securers)
	assert.True(t, s.Progress()[0].Done())
	assert.Empty(t, s.Progress()[0].MissingGroups(s.Domain))
}

// A request that ended shows how in the stage it ended in; the stages
// after it were never reached. Neither is "open".
func TestEndedRequestStagesAreNotOpen(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status request.Status
		want   string
	}{
		{"denied", request.StatusDenied, "denied"},
		{"expired", request.StatusExpired, "expired"},
		{"revoked", request.StatusRevoked, "revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := pendingState("r3")
			if tc.status == request.StatusDenied {
				s = withVotes(s, false, alice)
			}
			s.Status = tc.status
			v := viewOf(s, nil)
			require.Len(t, v.Flows[0].Stages, 2)
			assert.Equal(t, tc.want, v.Flows[0].Stages[0].State)
			assert.Equal(t, "not reached", v.Flows[0].Stages[1].State)
			assert.True(t, v.Flows[0].Stages[0].Deadline.IsZero(), "no deadline for a stage that ended")
			var show bytes.Buffer
			writeShow(&show, v, modelNow)
			assert.NotContains(t, show.String(), " open ")
			assert.Contains(t, show.String(), "1. lead         "+tc.want)
			assert.NotContains(t, show.String(), "waiting")
		})
	}

	// While the request waits, the stage is open and the next waits.
	v := viewOf(pendingState("r4"), nil)
	assert.Equal(t, "open", v.Flows[0].Stages[0].State)
	assert.Equal(t, "waiting", v.Flows[0].Stages[1].State)
}
