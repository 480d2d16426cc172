package consumers_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// examples/break-glass.cedar, added to the policies 'writ init' writes, as
// its comment and the README tell: a critical restart of production with an
// incident ticket is granted at once, for 15 minutes at most, raises a
// break-glass alert and opens the two-sre-leads review, which two SRE leads
// settle; without the ticket, or not critical, the restart still waits for
// them first.
func TestBreakGlassExample(t *testing.T) {
	read := func(p ...string) string {
		b, err := os.ReadFile(filepath.Join(append([]string{"..", "examples"}, p...)...))
		require.NoError(t, err)
		return string(b)
	}
	e := writtest.Start(t, writtest.Options{Policies: read("policies", "main.cedar") + "\n" + read("break-glass.cedar"), Flows: read("flows.json")})

	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db", Urgency: "critical", Ticket: "INC-42", Reason: "db down", TTL: time.Hour})
	r := e.Await(id, 10*time.Second, func(s request.State) bool {
		return s.Status == request.StatusGranted && len(s.Alerts) > 0
	})
	assert.True(t, r.State.Evaluation.BreakGlass)
	assert.Contains(t, r.State.Evaluation.Reasons, "developers-break-glass-restart-prod")
	assert.Equal(t, 15*time.Minute, r.State.Grant.ExpiresAt.Sub(r.State.Grant.NotBefore), "capped by the break-glass permit")
	assert.Equal(t, events.AlertBreakGlass, r.State.Alerts[0].Alert)
	assert.True(t, r.State.ReviewOpen())

	e.Vote("alice", id, true, "was needed")
	e.Vote("bob", id, true, "")
	r = e.Await(id, 10*time.Second, func(s request.State) bool { return s.Review != nil })
	assert.False(t, r.State.ReviewOpen())
	assert.Empty(t, r.Errs)

	for _, spec := range []client.Spec{
		{Action: "restart", Resource: "prod/db", Urgency: "critical"},               // no ticket
		{Action: "restart", Resource: "prod/db", Urgency: "high", Ticket: "INC-42"}, // not critical
	} {
		id := e.Request("carol", spec)
		r := e.Pending(id)
		assert.Equal(t, events.OutcomeReview, r.State.Evaluation.Outcome, "%+v waits for two SRE leads", spec)
		assert.False(t, r.State.Evaluation.BreakGlass)
	}
}
