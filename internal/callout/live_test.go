package callout_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/access"
	"github.com/writ-dev/writ/internal/callout"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/redeem"
	"github.com/writ-dev/writ/request"
)

// endBound is how soon after the revocation (or the lock) is asked the
// connection must be closed: the "within a second".
const endBound = time.Second

// liveConn is a connection made with a grant, which reports when the
// server closes it.
type liveConn struct {
	nc     *nats.Conn
	closed chan time.Time
}

func (f *fixture) open(t *testing.T, token string) *liveConn {
	t.Helper()
	c := &liveConn{closed: make(chan time.Time, 1)}
	var err error
	c.nc, err = f.connect(t, f.holder, token, nats.ClosedHandler(func(*nats.Conn) { c.closed <- time.Now() }))
	require.NoError(t, err)
	f.publishes(t, c.nc)
	return c
}

// publishes checks that the service hears what nc publishes: the
// connection is up and may act.
func (f *fixture) publishes(t *testing.T, nc *nats.Conn) {
	t.Helper()
	require.NoError(t, nc.Publish(allowed, []byte("go")))
	require.NoError(t, nc.Flush())
	select {
	case m := <-f.heard:
		require.Equal(t, allowed, m.Subject)
	case <-time.After(5 * time.Second):
		t.Fatal("the service did not hear the allowed publish")
	}
}

// endedWithin waits for the connection to close and returns how long after
// since it did; the test fails if it stays open for 10 s.
func (c *liveConn) endedWithin(t *testing.T, since time.Time) time.Duration {
	t.Helper()
	select {
	case at := <-c.closed:
		return at.Sub(since)
	case <-time.After(10 * time.Second):
		t.Fatal("the connection outlived its revoked or locked grant")
		return 0
	}
}

// The trail says revoked: the redemption, then the revocation that ended
// what it opened.
func (f *fixture) revokedAfterUse(t *testing.T, id string) {
	t.Helper()
	r := f.e.Await(id, 10*time.Second, func(s request.State) bool { return s.Status == request.StatusRevoked })
	kinds := writtest.Kinds(r)
	assert.Equal(t, []string{"redeemed", "revoke", "revoked"}, kinds[len(kinds)-3:])
	assert.Empty(t, r.Errs, "every event counts")
	assert.False(t, r.State.RedeemedAt.IsZero())
}

// TestRevokeEndsConnection: the bot's grant, redeemed by connecting through
// the callout, is revoked by an SRE lead; the server closes the connection
// within a second of the ask, and the grant cannot connect again.
func TestRevokeEndsConnection(t *testing.T) {
	t.Parallel()
	f := start(t, false)
	id, token := f.grant(t, 5*time.Minute)
	c := f.open(t, token)
	other := f.open(t, f.token(t))

	asked := time.Now()
	_, err := f.e.Client.Revoke(t.Context(), f.e.Identity("alice"), writtest.Domain, id, "compromised host")
	require.NoError(t, err)
	took := c.endedWithin(t, asked)
	t.Logf("revoke asked → connection closed: %s", took)
	assert.Less(t, took, endBound)
	f.revokedAfterUse(t, id)
	assert.ErrorIs(t, c.nc.Publish(allowed, nil), nats.ErrConnectionClosed)
	f.refused(t, f.holder, token, "revoked")

	// The bot's other grant is not revoked: its connection stays.
	f.publishes(t, other.nc)
	assert.True(t, other.nc.IsConnected())
}

// TestLockEndsConnection: locking the holder — as a principal, by its key,
// or its whole domain — closes the connections its grants opened within a
// second.
func TestLockEndsConnection(t *testing.T) {
	t.Parallel()
	f := start(t, false)
	bot := f.e.Identity(holderName)
	for _, target := range []events.LockTarget{
		{Type: events.LockPrincipal, Name: "acme/" + holderName},
		{Type: events.LockKey, Name: bot.Principal.Key},
		{Type: events.LockDomain, Name: writtest.Domain},
	} {
		t.Run(target.Type, func(t *testing.T) {
			c := f.open(t, f.token(t))
			asked := time.Now()
			lockID, err := f.e.Client.Lock(t.Context(), f.e.Identity("alice"), writtest.Domain, target, false, "stolen laptop")
			require.NoError(t, err)
			took := c.endedWithin(t, asked)
			t.Logf("lock %s asked → connection closed: %s", target.Type, took)
			assert.Less(t, took, endBound)
			r := f.e.AwaitAsk(lockID, 10*time.Second)
			require.NotNil(t, r.Series.Lock().Done, "%v", r.State.Answered)

			unlockID, err := f.e.Client.Lock(t.Context(), f.e.Identity("alice"), writtest.Domain, target, true, "found it")
			require.NoError(t, err)
			r = f.e.AwaitAsk(unlockID, 10*time.Second)
			require.NotNil(t, r.Series.Lock().Done, "%v", r.State.Answered)
			// Unlocked, the bot connects again with a new grant, and the
			// responder leaves it be (the barrier: a publish it hears
			// after the unlock reached the responder's lock list).
			require.Eventually(t, func() bool { return f.resp.Locked(bot.Principal) == nil }, 5*time.Second, 10*time.Millisecond)
			again := f.open(t, f.token(t))
			f.publishes(t, again.nc)
		})
	}
}

// TestTrailRevocationEndsConnection: a revoked event that the revocation
// list never heard of (as a break-glass review's denial may record) ends
// the connection too: the responder hears the trail, and checks the
// event there before it acts.
func TestTrailRevocationEndsConnection(t *testing.T) {
	t.Parallel()
	f := start(t, false)
	id, token := f.grant(t, 5*time.Minute)
	c := f.open(t, token)
	f.stopPipe()

	bot := f.e.Identity(holderName)
	_, err := f.e.Client.Revoke(t.Context(), bot, writtest.Domain, id, "done early")
	require.NoError(t, err)
	r, err := f.e.Client.Load(t.Context(), writtest.Domain, id)
	require.NoError(t, err)
	require.Len(t, r.State.RevokeAskers, 1)
	// The approval component's answer, recorded by its key, without a
	// word to the revocation list.
	out, err := events.Seal(events.Draft{
		Domain: writtest.Domain, RequestID: id, Kind: events.KindRevoked, Source: "writ://acme/approval", Time: time.Now(),
		Data: &events.Revoked{Prev: r.State.LastDigest, By: r.State.RevokeAskers[0], Reason: "done early"},
	}, f.e.Runtime.ApprovalKey)
	require.NoError(t, err)
	f.publishes(t, c.nc) // the ask alone ended nothing
	appended := time.Now()
	_, err = store.Append(t.Context(), f.js, "WRIT", out, r.State.LastSeq, events.RequestFilter(writtest.Domain, id))
	require.NoError(t, err)
	took := c.endedWithin(t, appended)
	t.Logf("revoked event appended → connection closed: %s", took)
	assert.Less(t, took, endBound)
	f.revokedAfterUse(t, id)
	assert.False(t, f.resp.Revoked(id, ""), "the revocation list never heard of it")
}

// TestReviewDenialEndsConnection: a break-glass grant, redeemed by
// connecting through the callout, is denied by its after-the-fact review;
// the approval component revokes it in the denier's name, and the server
// closes the connection within a second of the deny.
func TestReviewDenialEndsConnection(t *testing.T) {
	t.Parallel()
	f := startWith(t, false, writtest.Options{Policies: `
@id("bots-break-glass") @break_glass("true") @flow("two-sre-leads") @max_ttl("10m")
permit (principal, action == Action::"deploy", resource) when { context.urgency == "critical" };
@id("approvers-may-approve") permit (principal, action == Action::"approve", resource);
`})
	id := f.e.Request(holderName, client.Spec{Action: action, Resource: resource, Params: map[string]string{"version": "1.4.2"},
		Urgency: "critical", TTL: 5 * time.Minute})
	r := f.e.Await(id, 10*time.Second, func(s request.State) bool {
		return s.Status == request.StatusGranted && s.ReviewOpen() && len(s.Alerts) > 0
	})
	token, err := client.OpenGrant(r.State, f.e.Identity(holderName))
	require.NoError(t, err)
	c := f.open(t, token)

	denied := time.Now()
	f.e.Vote("alice", id, false, "no incident")
	took := c.endedWithin(t, denied)
	t.Logf("review denied → connection closed: %s", took)
	assert.Less(t, took, endBound)
	r = f.e.Await(id, 10*time.Second, func(s request.State) bool { return len(s.Alerts) > 1 })
	kinds := writtest.Kinds(r)
	assert.Equal(t, []string{"redeemed", "voted", "reviewed", "revoked", "alerted"}, kinds[len(kinds)-5:])
	assert.Equal(t, request.StatusRevoked, r.State.Status)
	assert.Empty(t, r.Errs, "every event counts")
	f.refused(t, f.holder, token, "revoked")
}

// TestRevokedWhileNoResponderRuns: the responder that authorized a
// connection stops; the grant is revoked meanwhile (the connection lives
// on: only a responder ends it); the next responder to start finds the
// connection on the target server by its user name and ends it.
func TestRevokedWhileNoResponderRuns(t *testing.T) {
	t.Parallel()
	f := start(t, false)
	id, token := f.grant(t, 5*time.Minute)
	c := f.open(t, token)
	kept := f.open(t, f.token(t))
	f.stopResp()

	_, err := f.e.Client.Revoke(t.Context(), f.e.Identity("alice"), writtest.Domain, id, "compromised host")
	require.NoError(t, err)
	f.revokedAfterUse(t, id)
	f.publishes(t, c.nc) // nobody ended it while no responder ran

	started := time.Now()
	f.respond(t)
	took := c.endedWithin(t, started)
	t.Logf("responder started → revoked connection closed: %s", took)
	f.publishes(t, kept.nc)
}

// TestAnotherRespondersConnection: two responders share the requests; the
// one that authorized a connection stops, and the other, hearing the
// revocation, finds the connection by its user name and ends it within a
// second.
func TestAnotherRespondersConnection(t *testing.T) {
	t.Parallel()
	f := start(t, false)
	id, token := f.grant(t, 5*time.Minute)
	c := f.open(t, token) // authorized by the first responder: the only one yet
	f.respond(t)
	f.stopResp()

	asked := time.Now()
	_, err := f.e.Client.Revoke(t.Context(), f.e.Identity(holderName), writtest.Domain, id, "done early")
	require.NoError(t, err)
	took := c.endedWithin(t, asked)
	t.Logf("revoke asked → another responder's connection closed: %s", took)
	assert.Less(t, took, endBound)
	f.revokedAfterUse(t, id)
}

// TestSystemRightsRequired: a responder whose system-account connection
// may not list and end connections does not run, and authorizes nothing:
// the server refuses a user without the callout-system role's rights.
func TestSystemRightsRequired(t *testing.T) {
	t.Parallel()
	f := start(t, false)
	f.stopResp()
	_, token := f.grant(t, 5*time.Minute)
	for name, dial := range map[string]func() *nats.Conn{
		// A system-account user with another role's rights.
		"system user with the reader's rights": func() *nats.Conn {
			pub, _ := f.sysReader.PublicKey()
			return connectNkey(t, f.target.ClientURL(), f.sysReader, nats.CustomInboxPrefix(access.InboxPrefix(writtest.Domain, pub)))
		},
		// A user of the granted users' account: it lists that account's
		// connections (every account may), but cannot end one.
		"the service's account": func() *nats.Conn {
			return connectNkey(t, f.target.ClientURL(), f.svcUser)
		},
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := callout.New(callout.Config{
				Conn: connectNkey(t, f.target.ClientURL(), f.authUser), System: dial(),
				Redeem: redeem.Config{NC: f.e.NC, Domain: writtest.Domain, Bundle: f.bundle, Key: f.e.Runtime.RedeemerKey},
				Signer: f.signer, Account: "APP", Logger: slog.New(f.codes),
			})
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- resp.Run(ctx) }()
			// A dial that outlasts the responder's (and the server's) answer on
			// a busy machine: the client's own 2 s default timed out once in CI.
			_, err = f.connect(t, f.holder, token, nats.Timeout(20*time.Second))
			require.ErrorIs(t, err, nats.ErrAuthorization, "nothing is authorized before the system connection is shown to work")
			select {
			case err := <-done:
				require.ErrorIs(t, err, callout.ErrCannotEnd)
				require.NoError(t, ctx.Err(), "Run gave up on its own")
			case <-ctx.Done():
				t.Fatal("Run went on without a working system connection")
			}
		})
	}
	// The grant was never used.
	st, rs := f.history(t, f.lastID)
	assert.Equal(t, request.StatusGranted, st.Status)
	assert.Empty(t, rs)
}
