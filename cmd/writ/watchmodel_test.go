package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/request"
)

var (
	modelNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	alice    = identity.Principal{Domain: "acme", Name: "alice", Key: "UALICE", Groups: []string{"team-leads"}}
	carol    = identity.Principal{Domain: "globex", Name: "carol", Key: "UCAROL", Groups: []string{"developers"}}
)

// pendingState is a request of carol's waiting for a two-stage flow, as the
// fold would leave it; the model needs no stream.
func pendingState(id string) request.State {
	deadline := modelNow.Add(10 * time.Minute)
	return request.State{
		Domain: "acme", ID: id, Status: request.StatusPending,
		Request: &events.Requested{
			Domain: "acme", Requester: events.PrincipalRef{Domain: "globex", Name: "carol"},
			Action: "restart", Resource: "prod/db", Params: map[string]string{"replica": "2"},
			Urgency: "high", Reason: "replication stuck", Ticket: "INC-7", TTLSeconds: 600,
		},
		RequestDigest: "sha256:" + id + "-digest",
		Requester:     carol,
		Evaluation: &events.Evaluated{
			Outcome: events.OutcomeReview, Reasons: []string{"developers-restart-prod"}, ExpiresAt: &deadline,
			Flows: []events.Flow{{Name: "lead-then-security", Stages: []events.Stage{
				{Name: "lead", Groups: []string{"team-leads"}, Required: 1, DeadlineSeconds: 600},
				{Name: "security", Groups: []string{"security"}, Required: 1, DeadlineSeconds: 600},
			}}},
		},
		EvaluatedAt: modelNow,
	}
}

func TestWatchModelRendersTheFacts(t *testing.T) {
	m := newWatchModel(alice)
	line := m.Update(pendingState("r1"), nil, modelNow)
	assert.Contains(t, line, "PENDING  r1")
	screen := m.Render(modelNow.Add(90*time.Second), 0)
	for _, want := range []string{
		"globex/carol (origin domain globex)", "restart", "acme/prod/db", `replica="2"`, `"replication stuck"`,
		"INC-7", "high", "ttl:", "10m0s",
		"lead-then-security: stage 1/2 'lead', 0 of 1 from team-leads",
		"(in 8m30s)", "approved by: nobody yet", "sha256:r1-digest",
		"a: approve", "d: deny",
	} {
		assert.Contains(t, screen, want)
	}

	// Someone else's vote shows up as it comes.
	s := pendingState("r1")
	s.Votes = []request.Vote{{Voter: identity.Principal{Domain: "acme", Name: "dave", Groups: []string{"team-leads"}}, Approve: true, Seq: 5, At: modelNow.Add(time.Minute)}}
	// dave satisfied stage 1; alice is not in security: no longer hers.
	assert.Contains(t, m.Update(s, nil, modelNow), "ANSWERED r1")
	assert.Empty(t, m.items)
	assert.Contains(t, m.Render(modelNow, 0), "none yet")
}

func TestWatchModelKeys(t *testing.T) {
	m := newWatchModel(alice)
	m.Update(pendingState("r1"), nil, modelNow)
	m.Update(pendingState("r2"), nil, modelNow)

	assert.Equal(t, actNone, m.Key(keyDown).Kind)
	a := m.Key("a")
	assert.Equal(t, watchAction{Kind: actVote, Domain: "acme", ID: "r2", Digest: "sha256:r2-digest", Approve: true}, a)
	assert.Contains(t, m.Render(modelNow, 0), "approving r2…")
	m.Result(a, "approved r2; still pending", nil)
	assert.Contains(t, m.Render(modelNow, 0), "approved r2; still pending")

	// Deny asks for a reason, refuses an empty one, and Esc cancels.
	assert.Equal(t, actNone, m.Key("k").Kind)
	assert.Equal(t, actNone, m.Key("d").Kind)
	assert.Contains(t, m.Render(modelNow, 0), "deny reason: _")
	assert.Equal(t, actNone, m.Key(keyEnter).Kind)
	assert.Contains(t, m.Render(modelNow, 0), "a deny needs a reason")
	for _, k := range decodeKeys([]byte("freezx\x7fe")) {
		assert.Equal(t, actNone, m.Key(k).Kind, "typing %q", k)
	}
	assert.Contains(t, m.Render(modelNow, 0), "deny reason: freeze_")
	a = m.Key(keyEnter)
	assert.Equal(t, watchAction{Kind: actVote, Domain: "acme", ID: "r1", Digest: "sha256:r1-digest", Reason: "freeze"}, a)
	m.Result(a, "", assert.AnError)
	assert.Contains(t, m.Render(modelNow, 0), "r1: "+assert.AnError.Error())

	assert.Equal(t, actNone, m.Key("d").Kind)
	assert.Equal(t, actNone, m.Key("q").Kind, "q is a letter of the reason while typing")
	assert.Equal(t, actNone, m.Key(keyEsc).Kind)
	assert.Contains(t, m.Render(modelNow, 0), "deny cancelled")
	assert.Equal(t, actQuit, m.Key("q").Kind)
	assert.Equal(t, actQuit, m.Key(keyCtrlC).Kind)
}

func TestWatchModelCommands(t *testing.T) {
	m := newWatchModel(alice)
	m.Update(pendingState("0190-aaaa"), nil, modelNow)
	m.Update(pendingState("0190-bbbb"), nil, modelNow)
	for _, tc := range []struct {
		line string
		want watchAction
		err  string
	}{
		{"approve 0190-aaaa", watchAction{Kind: actVote, Domain: "acme", ID: "0190-aaaa", Digest: "sha256:0190-aaaa-digest", Approve: true}, ""},
		{"approve 0190-b  looks right ", watchAction{Kind: actVote, Domain: "acme", ID: "0190-bbbb", Digest: "sha256:0190-bbbb-digest", Approve: true, Reason: "looks right"}, ""},
		{"deny 0190-aaaa release freeze", watchAction{Kind: actVote, Domain: "acme", ID: "0190-aaaa", Digest: "sha256:0190-aaaa-digest", Reason: "release freeze"}, ""},
		{"deny 0190-aaaa", watchAction{}, "deny needs a reason"},
		{"approve 0190", watchAction{}, "matches 2 requests"},
		{"approve other", watchAction{}, "not a request you may answer now"},
		{"approve", watchAction{}, "needs a request id"},
		{"frob x", watchAction{}, "unknown"},
		{"list", watchAction{}, ""},
		{"quit", watchAction{Kind: actQuit}, ""},
	} {
		t.Run(tc.line, func(t *testing.T) {
			a, err := m.Command(tc.line)
			if tc.err != "" {
				require.ErrorIs(t, err, errCommand)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, a)
		})
	}
}

func TestDecodeKeys(t *testing.T) {
	assert.Equal(t, []string{keyUp, keyDown, "a", keyEsc, keyEnter, keyBackspace, keyCtrlC, "é"},
		decodeKeys([]byte("\x1b[A\x1b[Ba\x1b\r\x7f\x03é\x1b[1;5C")))
}

// What a requester writes reaches the approver's screen quoted: no escape
// sequence, newline or look-alike key=value can pass for something else.
func TestRequesterTextIsQuoted(t *testing.T) {
	evil := map[string]string{"table": "users\x1b[2A\x1b[2K  action:     read-table", "x": "a b=c"}
	got := events.FormatParams(evil)
	assert.NotContains(t, got, "\x1b")
	assert.Equal(t, `table="users\x1b[2A\x1b[2K  action:     read-table" x="a b=c"`, got)
}

// reviewState is a break-glass grant of carol's whose after-the-fact
// review (by a team lead) is open.
func reviewState(id string) request.State {
	s := pendingState(id)
	s.Status = request.StatusGranted
	s.Evaluation.Outcome, s.Evaluation.BreakGlass = events.OutcomeAllow, true
	s.Evaluation.Flows = s.Evaluation.Flows[:1]
	s.Evaluation.Flows[0].Stages = s.Evaluation.Flows[0].Stages[:1]
	s.Alerts = []*events.Alerted{{Alert: events.AlertBreakGlass, Reason: "break-glass"}}
	return s
}

// An open break-glass review is listed, marked as such, with its time
// left counting down on the live screen; answering it settles it.
func TestWatchModelShowsReviews(t *testing.T) {
	m := newWatchModel(alice)
	s := reviewState("r1")
	require.True(t, s.ReviewOpen())
	line := m.Update(s, nil, modelNow)
	assert.Contains(t, line, "REVIEW   r1")
	assert.Contains(t, line, "used break-glass for restart on acme/prod/db (granted)")
	assert.Contains(t, line, "review due in 10m0s")
	for at, left := range map[time.Duration]string{90 * time.Second: "8m30s left", 9*time.Minute + 30*time.Second: "30s left"} {
		screen := m.Render(modelNow.Add(at), 0)
		assert.Contains(t, screen, "REVIEW globex/carol used break-glass: restart on acme/prod/db  [high]  "+left)
		assert.Contains(t, screen, "the after-the-fact review is open")
	}
	a := m.Key("a")
	assert.Equal(t, watchAction{Kind: actVote, Domain: "acme", ID: "r1", Digest: "sha256:r1-digest", Approve: true}, a)

	// Denied by someone else: it leaves the list, saying how it ended.
	s.Review = &events.Reviewed{Outcome: events.ReviewDenied, By: []events.PrincipalRef{{Domain: "acme", Name: "dave"}}, Reason: "no incident"}
	s.Status = request.StatusRevoked
	assert.Equal(t, `REVIEWED r1  denied by acme/dave "no incident"; the grant is revoked`, m.Update(s, nil, modelNow))
	assert.Empty(t, m.items)
}
