package consumers_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/request"
)

func TestAutoApproveGrantsAtOnce(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web", TTL: 5 * time.Minute})
	r := e.Settle(id)

	require.Equal(t, request.StatusGranted, r.State.Status)
	assert.Equal(t, []string{"requested", "evaluated", "granted"}, writtest.Kinds(r))
	assert.Equal(t, events.OutcomeAllow, r.State.Evaluation.Outcome)
	assert.Equal(t, []string{"bots-deploy-staging"}, r.State.Evaluation.Reasons)

	token, err := client.OpenGrant(r.State, e.Identity("deploy-bot"))
	require.NoError(t, err)
	claims, err := issuer.Verify(token, issuer.VerifyOptions{
		Bundle: e.Runtime.Bundle, Audience: writtest.Domain, Action: "deploy", Resource: "staging/web",
	})
	require.NoError(t, err)
	assert.Equal(t, e.Identity("deploy-bot").Principal.Key, claims.Holder)
	assert.Equal(t, id, claims.RequestID)
	assert.Equal(t, 5*time.Minute, claims.Expires.Sub(claims.NotBefore), "requested TTL, under the policy's 10m cap")
	assert.NotContains(t, string(r.Records[2].Body), token, "the stream must not hold the token in clear")

	_, err = client.OpenGrant(r.State, e.Identity("carol"))
	assert.Error(t, err, "only the requester can open the grant")
}

func TestGrantTTLCappedByPolicy(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web", TTL: time.Hour})
	r := e.Settle(id)
	require.Equal(t, request.StatusGranted, r.State.Status)
	assert.Equal(t, 10*time.Minute, r.State.Grant.ExpiresAt.Sub(r.State.Grant.NotBefore))
}

func TestTwoApproversGrant(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db", Reason: "stuck replication"})
	r := e.Pending(id)
	require.Equal(t, request.StatusPending, r.State.Status)
	require.Equal(t, "two-sre-leads", r.State.Evaluation.Flows[0].Name)

	e.Vote("alice", id, true, "")
	r = e.Await(id, 10*time.Second, func(s request.State) bool { return len(s.Votes) == 1 })
	assert.Equal(t, request.StatusPending, r.State.Status, "one approval of two")

	e.Vote("bob", id, true, "looks right")
	r = e.Settle(id)
	require.Equal(t, request.StatusGranted, r.State.Status)
	// The first vote decides nothing: counted answers it. The second
	// decides: the approval answers it.
	assert.Equal(t, []string{"requested", "evaluated", "voted", "counted", "voted", "approved", "granted"}, writtest.Kinds(r))
	assert.Equal(t, r.Records[2].Seq, r.Records[3].Data.(*events.Counted).RefSeq)
	approved := r.Records[5].Data.(*events.Approved)
	assert.ElementsMatch(t, []string{"acme/alice", "acme/bob"}, []string{approved.Approvers[0].ID(), approved.Approvers[1].ID()})
	assert.Equal(t, r.Records[5].Digest, r.State.Grant.Evidence, "the grant names the approval it rests on")
}

func TestDenyByPolicy(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	id := e.Request("carol", client.Spec{Action: "drop-database", Resource: "prod/db"})
	r := e.Settle(id)
	require.Equal(t, request.StatusDenied, r.State.Status)
	assert.Equal(t, []string{"requested", "evaluated"}, writtest.Kinds(r))
	assert.Equal(t, events.OutcomeDeny, r.State.Evaluation.Outcome)
	assert.Equal(t, []string{"no-prod-database-drop"}, r.State.Evaluation.Reasons)
	assert.Nil(t, r.State.Grant)
}

func TestDenyByApprover(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/api"})
	e.Pending(id)
	e.Vote("alice", id, true, "")
	e.Vote("bob", id, false, "not during the release freeze")
	r := e.Settle(id)
	require.Equal(t, request.StatusDenied, r.State.Status)
	assert.Equal(t, []string{"requested", "evaluated", "voted", "counted", "voted", "denied"}, writtest.Kinds(r))
	denied := r.Records[5].Data.(*events.Denied)
	assert.Equal(t, "acme/bob", denied.By[0].ID())
	assert.Equal(t, "not during the release freeze", denied.Reason)
}

const shortFlows = `{"flows": {"two-sre-leads": {"stages": [{"name": "leads", "groups": ["sre-leads"], "required": 2, "deadline": "2s"}]}}}`

func TestPendingRequestExpires(t *testing.T) {
	e := writtest.Start(t, writtest.Options{Flows: shortFlows})
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	r := e.Pending(id)
	deadline := *r.State.Evaluation.ExpiresAt
	e.Vote("alice", id, true, "")
	r = e.Settle(id)
	require.Equal(t, request.StatusExpired, r.State.Status)
	assert.Equal(t, []string{"requested", "evaluated", "voted", "counted", "expired"}, writtest.Kinds(r))
	expiredAt := r.Records[4].Envelope.Time
	assert.False(t, expiredAt.Before(deadline), "never expired early")
	assert.Less(t, expiredAt.Sub(deadline), time.Second, "fired within a second of the deadline")
	t.Logf("expired %s after the deadline", expiredAt.Sub(deadline))
	assert.Nil(t, r.State.Grant)

	// The timer stream keeps only timers still to fire.
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	timers, err := js.Stream(t.Context(), consumers.DefaultTimersStream)
	require.NoError(t, err)
	assert.Eventually(t, func() bool {
		info, err := timers.Info(t.Context())
		return err == nil && info.State.Msgs == 0
	}, 5*time.Second, 50*time.Millisecond)
}

func TestSelfApprovalRefused(t *testing.T) {
	flows := `{"flows": {"two-sre-leads": {"stages": [{"name": "leads", "groups": ["sre-leads", "developers"], "required": 1, "deadline": "1m"}]}}}`
	e := writtest.Start(t, writtest.Options{Flows: flows})
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	e.Pending(id)
	seq := e.Vote("carol", id, true, "I trust myself")
	r := e.Await(id, 10*time.Second, func(s request.State) bool { return s.Answered[seq] != "" })
	assert.Equal(t, "self-approval", r.State.Answered[seq])
	assert.Equal(t, request.StatusPending, r.State.Status, "a refused vote changes nothing")

	e.Vote("alice", id, true, "")
	r = e.Settle(id)
	assert.Equal(t, request.StatusGranted, r.State.Status)
}

func TestSameApproverCountsOnce(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	e.Pending(id)
	alice := e.Identity("alice")
	e.Vote("alice", id, true, "")
	// The same person again, with a freshly issued identity (new key) so
	// the message id differs: it must still count once.
	r := e.Await(id, 10*time.Second, func(s request.State) bool { return len(s.Votes) == 1 })
	require.Len(t, r.State.Votes, 1)
	again := reissue(t, e, alice.Principal.Name, alice.Principal.Groups)
	seq, err := e.Client.Vote(t.Context(), again, writtest.Domain, id, client.Vote{Approve: true})
	require.NoError(t, err)
	r = e.Await(id, 10*time.Second, func(s request.State) bool { return s.Answered[seq] != "" })
	assert.Equal(t, "duplicate-vote", r.State.Answered[seq])
	assert.Equal(t, request.StatusPending, r.State.Status)
	assert.Len(t, r.State.Votes, 1)
}

// reissue mints a second identity for an existing principal name, signed
// by the domain's account key.
func reissue(t *testing.T, e *writtest.Env, name string, groups []string) *identity.Identity {
	t.Helper()
	account, err := identity.LoadSeed(e.Dir + "/keys/account.nk")
	require.NoError(t, err)
	creds, err := identity.IssueUser(account, identity.UserSpec{Domain: writtest.Domain, Name: name, Groups: groups})
	require.NoError(t, err)
	id, err := identity.ParseCreds(creds)
	require.NoError(t, err)
	return id
}

// A durable consumer deleted under a running pipeline is made again, and
// the pipeline goes on serving.
func TestDeletedConsumerIsRecreated(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	name := consumers.DurablePolicy + writtest.Domain
	require.Eventually(t, func() bool {
		_, err := js.Consumer(t.Context(), consumers.DefaultStream, name)
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, js.DeleteConsumer(t.Context(), consumers.DefaultStream, name))
	id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	r := e.Settle(id)
	assert.Equal(t, request.StatusGranted, r.State.Status)
}

// A deadline whose timer was lost while the pipeline was down (the timer
// stream purged, or its schedule replaced by someone who could publish
// there) still ends the request: the approval consumer sweeps overdue
// requests when it starts.
func TestLostTimerIsSweptAtStart(t *testing.T) {
	e := writtest.Start(t, writtest.Options{Flows: shortFlows, NoServe: true})
	stop := e.Serve("")
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	r := e.Pending(id)
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	timers, err := js.Stream(t.Context(), consumers.DefaultTimersStream)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := timers.Info(t.Context())
		return err == nil && info.State.Msgs == 1
	}, 5*time.Second, 20*time.Millisecond, "the deadline is scheduled")
	stop()
	require.NoError(t, timers.Purge(t.Context()))
	time.Sleep(time.Until(*r.State.Evaluation.ExpiresAt) + 200*time.Millisecond)

	e.Serve("")
	r = e.Settle(id)
	assert.Equal(t, request.StatusExpired, r.State.Status)
}

// The policy set and flows the pipeline decides with are in the trail,
// once, exactly as loaded: any evaluation can be re-run from the stream.
func TestPolicySetIsRecordedOnce(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	stop := e.Serve("")
	id := e.Request("carol", client.Spec{Action: "drop-database", Resource: "prod/db"})
	ev := e.Settle(id).State.Evaluation
	pid := events.PolicyID(ev.PolicyDigest, ev.FlowsDigest)
	r, err := e.Client.Load(t.Context(), writtest.Domain, pid)
	require.NoError(t, err)
	require.Len(t, r.Records, 1)
	require.True(t, r.Records[0].Valid(), "%v", r.Records[0].Err)
	rec := r.Series.Policy().Record
	require.NotNil(t, rec)
	assert.Equal(t, ev.PolicyDigest, events.Digest([]byte(rec.PolicySource)), "the recorded text is what the digest covers")
	assert.Equal(t, ev.FlowsDigest, events.Digest([]byte(rec.FlowsSource)))
	assert.Contains(t, rec.PolicySource, `@id("no-prod-database-drop")`)

	stop()
	e.Serve("") // a restart records nothing new
	e.Settle(e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"}))
	r, err = e.Client.Load(t.Context(), writtest.Domain, pid)
	require.NoError(t, err)
	assert.Len(t, r.Records, 1)
}
