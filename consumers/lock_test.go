package consumers_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/locks"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/redeem"
	"github.com/writ-dev/writ/request"
)

// lock asks, as name, to lock or unlock a target, and waits for the answer.
func lock(t *testing.T, e *writtest.Env, name string, target events.LockTarget, unlock bool) *client.Request {
	t.Helper()
	id, err := e.Client.Lock(t.Context(), e.Identity(name), writtest.Domain, target, unlock, "test")
	require.NoError(t, err)
	return e.AwaitAsk(id, 10*time.Second)
}

func TestLockBlocksNewRequests(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	bot := e.Identity("deploy-bot")
	deploy := client.Spec{Action: "deploy", Resource: "staging/web"}
	for _, target := range []events.LockTarget{
		{Type: events.LockPrincipal, Name: "acme/deploy-bot"},
		{Type: events.LockKey, Name: bot.Principal.Key},
		{Type: events.LockDomain, Name: "acme"},
	} {
		t.Run(target.Type, func(t *testing.T) {
			r := lock(t, e, "alice", target, false)
			require.NotNil(t, r.Series.Lock().Done, "%v", r.State.Answered)
			assert.Equal(t, []string{"lock", "locked"}, writtest.Kinds(r))

			id := e.Request("deploy-bot", deploy)
			got := e.Settle(id)
			require.Equal(t, request.StatusRejected, got.State.Status)
			assert.Equal(t, "locked", got.State.Rejection.Code)

			r = lock(t, e, "alice", target, true)
			require.NotNil(t, r.Series.Lock().Done)
			id = e.Request("deploy-bot", deploy)
			assert.Equal(t, request.StatusGranted, e.Settle(id).State.Status, "unlocked")
		})
	}
}

func TestLockNeedsPolicy(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	r := lock(t, e, "carol", events.LockTarget{Type: events.LockPrincipal, Name: "acme/alice"}, false)
	assert.Nil(t, r.Series.Lock().Done)
	for _, code := range r.State.Answered {
		assert.Equal(t, "not-authorized", code)
	}
	assert.Len(t, r.State.Answered, 1)
}

// A lock that arrives while a request is pending blocks its grant too,
// and the request ends there: the issuer's refusal of the approval is its
// terminal event (refused, code locked), not an approval left waiting for
// a grant that never comes.
func TestLockBlocksAnApprovedGrant(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	e.Pending(id)
	require.NotNil(t, lock(t, e, "bob", events.LockTarget{Type: events.LockPrincipal, Name: "acme/carol"}, false).Series.Lock().Done)
	e.Vote("alice", id, true, "")
	e.Vote("bob", id, true, "")
	r := e.Settle(id)
	require.Equal(t, request.StatusRefused, r.State.Status, "approved, refused by the issuer, ended: %v", writtest.Kinds(r))
	assert.Equal(t, []string{"requested", "evaluated", "voted", "voted", "approved", "refused"}, withoutCounted(writtest.Kinds(r)))
	assert.Nil(t, r.State.Grant)
	require.NotNil(t, r.State.Refusal)
	assert.Equal(t, "locked", r.State.Refusal.Code)
	assert.Contains(t, r.State.Refusal.Reason, "acme/carol")
	assert.Equal(t, r.State.DecisionSeq, r.State.Refusal.RefSeq, "it answers the approval")
	assert.Empty(t, r.Errs)
	assert.True(t, r.State.NextDue().IsZero(), "nothing left to wait for")
}

// A lock blocks redemptions of grants made before it.
func TestLockBlocksRedemption(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	r := e.Settle(id)
	require.Equal(t, request.StatusGranted, r.State.Status)
	bot := e.Identity("deploy-bot")
	token, err := client.OpenGrant(r.State, bot)
	require.NoError(t, err)

	rd, err := redeem.New(redeem.Config{NC: e.NC, Domain: writtest.Domain, Bundle: e.Runtime.Bundle, Key: e.Runtime.RedeemerKey, Service: "test"})
	require.NoError(t, err)
	go func() { _ = rd.Run(t.Context()) }()
	require.NoError(t, rd.WaitReady(t.Context()))

	require.NotNil(t, lock(t, e, "alice", events.LockTarget{Type: events.LockPrincipal, Name: "acme/deploy-bot"}, false).Series.Lock().Done)
	require.Eventually(t, func() bool { return errors.Is(rd.Locked(bot.Principal), locks.ErrLocked) }, 2*time.Second, 5*time.Millisecond,
		"the redeemer hears of the lock")
	want := redeem.Want{Action: "deploy", Resource: "staging/web"}
	proof, err := redeem.Prove(bot.Key, token, want, time.Now())
	require.NoError(t, err)
	_, err = rd.Redeem(t.Context(), token, proof, want)
	require.ErrorIs(t, err, redeem.ErrLocked)

	require.NotNil(t, lock(t, e, "alice", events.LockTarget{Type: events.LockPrincipal, Name: "acme/deploy-bot"}, true).Series.Lock().Done)
	require.Eventually(t, func() bool { return rd.Locked(bot.Principal) == nil }, 2*time.Second, 5*time.Millisecond)
	proof, err = redeem.Prove(bot.Key, token, want, time.Now())
	require.NoError(t, err)
	_, err = rd.Redeem(t.Context(), token, proof, want)
	require.NoError(t, err, "unlocked, the grant is good again")
}

// The trail is the authority on locks: a lock deleted from the bucket by
// someone with every right still refuses the locked principal's next
// request and redemption, though nothing puts the entry back (the
// approval component, which would, is not running). Started again, the
// approval component puts it back; an unlock through Writ then lifts it.
func TestLockSurvivesDeletionFromTheBucket(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	stop := e.ServeOnly()
	bot := e.Identity("deploy-bot")
	deploy := client.Spec{Action: "deploy", Resource: "staging/web"}

	// A grant the bot holds from before the lock, and a redeemer.
	r := e.Settle(e.Request("deploy-bot", deploy))
	require.Equal(t, request.StatusGranted, r.State.Status)
	token, err := client.OpenGrant(r.State, bot)
	require.NoError(t, err)
	rd, err := redeem.New(redeem.Config{NC: e.NC, Domain: writtest.Domain, Bundle: e.Runtime.Bundle, Key: e.Runtime.RedeemerKey, Service: "test"})
	require.NoError(t, err)
	go func() { _ = rd.Run(t.Context()) }()
	require.NoError(t, rd.WaitReady(t.Context()))

	target := events.LockTarget{Type: events.LockPrincipal, Name: "acme/deploy-bot"}
	require.NotNil(t, lock(t, e, "alice", target, false).Series.Lock().Done)
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	kv, err := js.KeyValue(t.Context(), locks.Bucket)
	require.NoError(t, err)
	key, err := locks.Key(target)
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, err := kv.Get(t.Context(), key); return err == nil }, 5*time.Second, 5*time.Millisecond,
		"the lock is applied to the bucket")

	// Only the policy and the issuer run now: nobody puts the entry back.
	stop()
	e.ServeOnly("policy", "issuer")
	// A watcher of our own hears the deletion; the pipeline's and the
	// redeemer's hear it by the same push.
	w, err := kv.Watch(t.Context(), key, jetstream.UpdatesOnly())
	require.NoError(t, err)
	defer func() { _ = w.Stop() }()
	require.NoError(t, kv.Delete(t.Context(), key))
	for u := range w.Updates() {
		if u != nil && u.Operation() == jetstream.KeyValueDelete {
			break
		}
	}

	id := e.Request("deploy-bot", deploy)
	got := e.Settle(id)
	require.Equal(t, request.StatusRejected, got.State.Status, "no grant for a principal the trail locks")
	assert.Equal(t, "locked", got.State.Rejection.Code)
	assert.Contains(t, got.State.Rejection.Reason, "acme/deploy-bot")
	want := redeem.Want{Action: "deploy", Resource: "staging/web"}
	proof, err := redeem.Prove(bot.Key, token, want, time.Now())
	require.NoError(t, err)
	_, err = rd.Redeem(t.Context(), token, proof, want)
	require.ErrorIs(t, err, redeem.ErrLocked, "nor a redemption")
	_, err = kv.Get(t.Context(), key)
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "the trail refused them, not the bucket")

	// The approval component, back, puts the entry back.
	e.ServeOnly("approval")
	require.Eventually(t, func() bool { _, err := kv.Get(t.Context(), key); return err == nil }, 5*time.Second, 5*time.Millisecond,
		"the approval component restores the lock the trail records")

	// Unlocked through Writ: the next request is granted at once.
	require.NotNil(t, lock(t, e, "alice", target, true).Series.Lock().Done)
	assert.Equal(t, request.StatusGranted, e.Settle(e.Request("deploy-bot", deploy)).State.Status)
	proof, err = redeem.Prove(bot.Key, token, want, time.Now())
	require.NoError(t, err)
	_, err = rd.Redeem(t.Context(), token, proof, want)
	require.NoError(t, err, "unlocked, the grant is good again")
}

// A bucket entry written by hand locks nobody the trail unlocked, and the
// approval component removes it.
func TestLockBucketEntryTheTrailUnlocked(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	target := events.LockTarget{Type: events.LockPrincipal, Name: "acme/deploy-bot"}
	require.NotNil(t, lock(t, e, "alice", target, false).Series.Lock().Done)
	require.NotNil(t, lock(t, e, "alice", target, true).Series.Lock().Done)
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	kv, err := js.KeyValue(t.Context(), locks.Bucket)
	require.NoError(t, err)
	key, err := locks.Key(target)
	require.NoError(t, err)
	_, err = kv.PutString(t.Context(), key, "forged")
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, err := kv.Get(t.Context(), key); return errors.Is(err, jetstream.ErrKeyNotFound) }, 5*time.Second, 5*time.Millisecond,
		"the approval component removes a lock the trail lifted")
	assert.Equal(t, request.StatusGranted, e.Settle(e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})).State.Status)
}
