package consumers_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/redeem"
	"github.com/writ-dev/writ/request"
)

// revoke asks, as name, to revoke id, and waits for the answer.
func revoke(t *testing.T, e *writtest.Env, name, id, reason string) (*client.Request, uint64) {
	t.Helper()
	seq, err := e.Client.Revoke(t.Context(), e.Identity(name), writtest.Domain, id, reason)
	require.NoError(t, err)
	r := e.Await(id, 10*time.Second, func(s request.State) bool {
		return s.Answered[seq] != "" || s.Status == request.StatusRevoked
	})
	return r, seq
}

func TestRequesterWithdrawsAPendingRequest(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	e.Pending(id)
	r, _ := revoke(t, e, "carol", id, "fixed it myself")
	require.Equal(t, request.StatusRevoked, r.State.Status)
	assert.Equal(t, []string{"requested", "evaluated", "revoke", "revoked"}, writtest.Kinds(r))
	assert.Equal(t, "acme/carol", r.State.Revocation.By.ID())

	_, err := e.Client.Vote(t.Context(), e.Identity("alice"), writtest.Domain, id, client.Vote{Approve: true})
	assert.ErrorIs(t, err, client.ErrNotPending, "nothing to approve any more")
}

func TestRevocationNeedsPolicy(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	granted := e.Settle(id)
	require.Equal(t, request.StatusGranted, granted.State.Status)

	// A developer may not revoke the bot's grant...
	r, seq := revoke(t, e, "carol", id, "I do not like it")
	assert.Equal(t, "not-authorized", r.State.Answered[seq])
	assert.Equal(t, request.StatusGranted, r.State.Status)

	// ...an SRE lead may (policy sre-leads-revoke), and verifiers hear of it.
	rd, err := redeem.New(redeem.Config{
		NC: e.NC, Domain: writtest.Domain, Bundle: e.Runtime.Bundle, Key: e.Runtime.RedeemerKey, Service: "test",
	})
	require.NoError(t, err)
	go func() { _ = rd.Run(t.Context()) }()
	require.NoError(t, rd.WaitReady(t.Context()))
	require.False(t, rd.Revoked(id, granted.State.Grant.TokenHash))

	r, _ = revoke(t, e, "alice", id, "bot compromised")
	require.Equal(t, request.StatusRevoked, r.State.Status)
	last := r.Records[len(r.Records)-1]
	assert.Equal(t, events.KindRevoked, last.Kind)
	assert.Eventually(t, func() bool { return rd.Revoked(id, granted.State.Grant.TokenHash) }, time.Second, 10*time.Millisecond,
		"a running verifier learns of the revocation within a second")

	// Nothing more happens to a revoked request.
	_, err = e.Client.Revoke(t.Context(), e.Identity("bob"), writtest.Domain, id, "again")
	assert.ErrorIs(t, err, client.ErrClosed)
}

// A revocation asked while the grant was live, answered after the grant was
// used: the grant may still be in use (a connection it opened through the
// NATS callout lives until it expires), so it is revoked, and recorded;
// verifiers, the callout among them, hear of it.
func TestRevokeAfterRedemptionIsRecorded(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	stop := e.Serve("")
	id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	r := e.Settle(id)
	require.Equal(t, request.StatusGranted, r.State.Status)
	stop()

	bot := e.Identity("deploy-bot")
	seq, err := e.Client.Revoke(t.Context(), bot, writtest.Domain, id, "not needed after all")
	require.NoError(t, err)
	token, err := client.OpenGrant(r.State, bot)
	require.NoError(t, err)
	rd := redeemer(t, e)
	want := redeem.Want{Action: "deploy", Resource: "staging/web"}
	proof, err := redeem.Prove(bot.Key, token, want, time.Now())
	require.NoError(t, err)
	_, err = rd.Redeem(t.Context(), token, proof, want)
	require.NoError(t, err)

	e.Serve("")
	r = e.Await(id, 10*time.Second, func(s request.State) bool { return s.Answered[seq] != "" || s.Status == request.StatusRevoked })
	assert.Equal(t, request.StatusRevoked, r.State.Status)
	assert.Equal(t, []string{"requested", "evaluated", "granted", "revoke", "redeemed", "revoked"}, writtest.Kinds(r))
	assert.Empty(t, r.Errs, "every event in the history counts")
	assert.Eventually(t, func() bool { return rd.Revoked(id, r.State.Grant.TokenHash) }, time.Second, 10*time.Millisecond)
}

// An SRE lead revokes a grant already redeemed and still live: allowed by
// the same policy, and recorded. Once the grant has expired there is
// nothing left to revoke: the ask is refused as closed.
func TestRevokeRedeemedGrant(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	rd := redeemer(t, e)
	bot := e.Identity("deploy-bot")
	redeemed := func(ttl time.Duration) *client.Request {
		id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web", TTL: ttl})
		r := e.Settle(id)
		require.Equal(t, request.StatusGranted, r.State.Status)
		token, err := client.OpenGrant(r.State, bot)
		require.NoError(t, err)
		want := redeem.Want{Action: "deploy", Resource: "staging/web"}
		proof, err := redeem.Prove(bot.Key, token, want, time.Now())
		require.NoError(t, err)
		_, err = rd.Redeem(t.Context(), token, proof, want)
		require.NoError(t, err)
		return e.Await(id, 10*time.Second, func(s request.State) bool { return s.Status == request.StatusRedeemed })
	}

	live := redeemed(5 * time.Minute)
	r, seq := revoke(t, e, "alice", live.State.ID, "bot compromised")
	require.Equal(t, request.StatusRevoked, r.State.Status, "answered %q", r.State.Answered[seq])
	assert.Equal(t, "acme/alice", r.State.Revocation.By.ID())
	assert.False(t, r.State.RedeemedAt.IsZero(), "the redemption stays on record")
	assert.Empty(t, r.Errs)
	assert.True(t, rd.Revoked(live.State.ID, live.State.Grant.TokenHash), "written to the revocation list before it is recorded")

	short := redeemed(issuer.MinTTL)
	time.Sleep(time.Until(short.State.Grant.ExpiresAt) + 10*time.Millisecond)
	r, seq = revoke(t, e, "alice", short.State.ID, "too late")
	assert.Equal(t, "closed", r.State.Answered[seq])
	assert.Equal(t, request.StatusRedeemed, r.State.Status)
}

func redeemer(t *testing.T, e *writtest.Env) *redeem.Redeemer {
	t.Helper()
	rd, err := redeem.New(redeem.Config{NC: e.NC, Domain: writtest.Domain, Bundle: e.Runtime.Bundle, Key: e.Runtime.RedeemerKey, Service: "test"})
	require.NoError(t, err)
	go func() { _ = rd.Run(t.Context()) }()
	require.NoError(t, rd.WaitReady(t.Context()))
	return rd
}
