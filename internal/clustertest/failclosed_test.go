package clustertest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// TestClusterFailsClosedWithoutQuorum stops two of the three nodes while
// two Writ replicas run: the audit stream has no quorum and takes no
// writes. Requests and votes made meanwhile fail with an error (a request
// whose outcome is unknown says so, with its id), and no grant appears;
// when the nodes return, what was acknowledged before the outage
// completes, and new requests are granted. The stream leader is the
// node left running, so the requests it took in during the outage wait in
// its log, uncommitted, for the quorum.
func TestClusterFailsClosedWithoutQuorum(t *testing.T) {
	c := writtest.Cluster(t, 3, writtest.Options{})
	c.ServeReplicas(2)
	bot := c.Identity("deploy-bot")
	stream := c.Runtime.Config.Stream.Name

	// Acknowledged before the outage: a request waiting for its second
	// approver, and one that needs none, made just before.
	review := c.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	await(t, c, review, func(s request.State) bool { return s.Status.IsPending() })
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	require.NoError(t, voteUntilCounted(ctx, c.Client, c.Identity("alice"), c.Domain, review, func(string, error) {}))
	await(t, c, review, func(s request.State) bool { return len(s.Votes) == 1 })
	auto := c.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/before"})

	leader := c.StreamLeader(stream)
	require.GreaterOrEqual(t, leader, 0)
	var down []int
	for i := range c.Nodes {
		if i != leader {
			c.Kill(i)
			down = append(down, i)
		}
	}
	downAt := time.Now()
	before, readable := grants(t, c)

	// While down: requests and votes fail, each within its caller's time.
	// The leader may hold a request in its log, uncommitted: its outcome is
	// unknown, and the error says so, with the id to look it up by.
	var unknownIDs []string
	for k := range 2 {
		rctx, rcancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		t0 := time.Now()
		id, err := c.Client.Request(rctx, bot, client.Spec{Domain: c.Domain, Action: "deploy", Resource: "staging/during"})
		rcancel()
		require.Error(t, err, "request %d while the stream has no quorum", k)
		t.Logf("request during the outage failed after %s: %v", time.Since(t0).Round(time.Millisecond), err)
		if errors.Is(err, client.ErrOutcomeUnknown) {
			require.NotEmpty(t, id, "an unknown outcome comes with the id")
			unknownIDs = append(unknownIDs, id)
		} else {
			assert.Empty(t, id)
		}
	}
	vctx, vcancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	_, err := c.Client.Vote(vctx, c.Identity("bob"), c.Domain, review, client.Vote{Approve: true})
	vcancel()
	require.Error(t, err, "a vote while the stream has no quorum")
	// What the stream holds (as far as it can be read) did not change:
	// no grant appeared, not even for the request acknowledged just before.
	during, readableToo := grants(t, c)
	if readable && readableToo {
		assert.Equal(t, before, during, "no grant appears while the stream has no quorum")
	}
	t.Logf("the stream could be read during the outage: %v, %v", readable, readableToo)

	// Back up.
	upAt := time.Now()
	for _, i := range down {
		c.Restart(i)
	}
	c.AwaitJetStream(60 * time.Second)
	c.AwaitStreamLeader(stream, 60*time.Second)
	recovered := time.Since(upAt)

	r := settle(t, c, auto)
	assert.Equal(t, request.StatusGranted, r.State.Status, "acknowledged before the outage: granted")
	assertOneEnd(t, r)
	require.NoError(t, voteUntilCounted(ctx, c.Client, c.Identity("bob"), c.Domain, review, func(string, error) {}))
	r = settle(t, c, review)
	assert.Equal(t, request.StatusGranted, r.State.Status, "%v", writtest.Kinds(r))
	assertOneEnd(t, r)
	t0 := time.Now()
	after := c.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/after"})
	r = settle(t, c, after)
	assert.Equal(t, request.StatusGranted, r.State.Status)
	firstGrant := time.Since(t0)

	// A request of unknown outcome that the leader took into its log is
	// committed when the quorum returns (its stored time is when the leader
	// took it in), and then goes through the pipeline like any other.
	recorded := 0
	for _, id := range unknownIDs {
		if _, err := c.Client.Load(t.Context(), c.Domain, id); err != nil {
			continue
		}
		recorded++
		r := settle(t, c, id)
		assertOneEnd(t, r)
	}
	rep, err := audit.VerifyStream(t.Context(), store.Reader{NC: c.NC, Stream: stream}, audit.Options{Bundle: c.Runtime.Bundle}, nil)
	require.NoError(t, err)
	for _, f := range rep.Findings {
		t.Logf("audit finding: %+v", f)
	}
	assert.True(t, rep.OK(), "the trail verifies")
	t.Logf("outage %s; quorum back %s after the restart; a new request granted in %s; requests of unknown outcome during the outage, recorded after it: %d of %d",
		upAt.Sub(downAt).Round(time.Millisecond), recovered.Round(time.Millisecond), firstGrant.Round(time.Millisecond), recorded, len(unknownIDs))
}

// grants counts the granted events in the stream, if it can be read.
func grants(t *testing.T, c *writtest.ClusterEnv) (int, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	msgs, err := store.Reader{NC: c.NC, Stream: c.Runtime.Config.Stream.Name}.Load(ctx, events.KindFilter(events.KindGranted), 1)
	return len(msgs), err == nil
}
