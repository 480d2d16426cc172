package client_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

func TestRequestRefusesAnUnclearResource(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	for _, res := range []string{"dev/../prod/db", "", "/prod", "prod//db"} {
		_, err := e.Client.Request(t.Context(), e.Identity("carol"), client.Spec{Domain: writtest.Domain, Action: "restart", Resource: res})
		assert.ErrorIs(t, err, client.ErrInvalidSpec, res)
	}
}

// A request the audit stream refuses was not made, and says so with an
// error the caller can tell from an outcome left unknown.
func TestRequestNotRecorded(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	spec := client.Spec{Domain: writtest.Domain, Action: "restart", Resource: "prod/db"}

	t.Run("a stream that does not take the subject", func(t *testing.T) {
		other, err := client.New(e.NC, client.Options{Bundle: e.Runtime.Bundle, Home: e.Domain, Stream: "WRIT_OTHER"})
		require.NoError(t, err)
		id, err := other.Request(t.Context(), e.Identity("carol"), spec)
		require.ErrorIs(t, err, client.ErrNotRecorded)
		assert.NotErrorIs(t, err, client.ErrOutcomeUnknown)
		assert.Empty(t, id)
	})

	t.Run("the stream deleted", func(t *testing.T) {
		js, err := jetstream.New(e.NC)
		require.NoError(t, err)
		require.NoError(t, js.DeleteStream(t.Context(), client.DefaultStream))
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		id, err := e.Client.Request(ctx, e.Identity("carol"), spec)
		require.ErrorIs(t, err, client.ErrNotRecorded)
		assert.NotErrorIs(t, err, client.ErrOutcomeUnknown)
		assert.Empty(t, id)
	})
}

func TestFindLoadAndRequests(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	a := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	b := e.Request("carol", client.Spec{Action: "drop-database", Resource: "prod/db"})
	e.Settle(a)
	e.Settle(b)

	d, err := e.Client.Find(t.Context(), b)
	require.NoError(t, err)
	assert.Equal(t, writtest.Domain, d)
	_, err = e.Client.Find(t.Context(), "0195a7a0-0000-7000-8000-000000000000")
	assert.ErrorIs(t, err, client.ErrNotFound)
	_, err = e.Client.Find(t.Context(), "not-an-id")
	assert.Error(t, err)
	_, err = e.Client.Load(t.Context(), writtest.Domain, "0195a7a0-0000-7000-8000-000000000000")
	assert.ErrorIs(t, err, client.ErrNotFound)

	var seen []string
	require.NoError(t, e.Client.Requests(t.Context(), "", func(r *client.Request) error {
		seen = append(seen, r.State.ID+" "+r.State.Status.String())
		return nil
	}))
	assert.Equal(t, []string{a + " granted", b + " denied"}, seen, "in the order they were made")

	var kinds []string
	require.NoError(t, e.Client.Replay(t.Context(), events.RequestFilter(writtest.Domain, a), func(r events.Record) error {
		assert.True(t, r.Valid(), r.Err)
		kinds = append(kinds, r.Kind.String())
		return nil
	}))
	assert.Equal(t, []string{"requested", "evaluated", "granted"}, kinds)
}

func TestPendingAndVote(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db", Reason: "stuck"})
	e.Pending(id)
	alice, carol := e.Identity("alice"), e.Identity("carol")

	pending, err := e.Client.Pending(t.Context(), "", alice.Principal)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	assert.Equal(t, id, pending[0].State.ID)
	mine, err := e.Client.Pending(t.Context(), writtest.Domain, carol.Principal)
	require.NoError(t, err)
	assert.Empty(t, mine, "nobody is asked to answer their own request")

	e.Vote("alice", id, true, "")
	pending, err = e.Client.Pending(t.Context(), "", alice.Principal)
	require.NoError(t, err)
	assert.Empty(t, pending, "answered")

	e.Vote("bob", id, false, "not now")
	e.Settle(id)
	_, err = e.Client.Vote(t.Context(), e.Identity("bob"), writtest.Domain, id, client.Vote{Approve: true})
	assert.ErrorIs(t, err, client.ErrNotPending)
}

// The client judges events by the pipeline's size limit, not its own default.
func TestClientUsesThePipelinesBodyLimit(t *testing.T) {
	e := writtest.Start(t, writtest.Options{MaxEventBytes: 256 << 10})
	big := strings.Repeat("x", 1000)
	params := map[string]string{}
	for i := range 64 {
		params["p"+strings.Repeat("a", i%10)+string(rune('a'+i%26))+string(rune('a'+i/26))] = big
	}
	id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web", Params: params})
	r := e.Await(id, 20*time.Second, client.Settled)
	assert.Equal(t, request.StatusGranted, r.State.Status)
	assert.Greater(t, len(r.Records[0].Body), 64<<10)
}

// The pipeline answers every vote: counted (deciding nothing yet), refused
// (with the reason), or by the decision it made. AwaitAnswer returns on
// that answer.
func TestAwaitAnswer(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	e.Pending(id)
	vote := func(name string, approve bool) (*client.Request, uint64) {
		t.Helper()
		seq := e.Cast(name, id, approve, "")
		r, err := e.Client.AwaitAnswer(t.Context(), writtest.Domain, id, seq)
		require.NoError(t, err)
		require.True(t, r.State.VoteAnswered(seq))
		return r, seq
	}

	r, _ := vote("alice", true)
	assert.Equal(t, request.StatusPending, r.State.Status)
	require.Len(t, r.State.Votes, 1)
	assert.True(t, r.State.Votes[0].Counted, "counted")
	assert.Equal(t, events.KindCounted, r.Records[len(r.Records)-1].Kind)

	r, seq := vote("deploy-bot", true) // no approver
	assert.Equal(t, "not-eligible", r.State.Answered[seq], "refused")

	r, _ = vote("bob", true)
	assert.NotEqual(t, request.StatusPending, r.State.Status, "the decision answers the vote that made it")
}

// FindIn and PendingIn over the domains a client reaches; here one
// domain alone (the cross-domain cases run across leafnodes in cmd/writ's
// TestCrossDomain* tests).
func TestReachFindInPendingIn(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	reach := e.Client.Reach(t.Context())
	assert.Equal(t, []string{writtest.Domain}, reach.Domains)
	assert.Empty(t, reach.Missed)

	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	e.Pending(id)
	d, err := e.Client.FindIn(t.Context(), id, reach.Domains)
	require.NoError(t, err)
	assert.Equal(t, writtest.Domain, d)
	_, err = e.Client.FindIn(t.Context(), "0195a7a0-0000-7000-8000-000000000000", reach.Domains)
	assert.ErrorIs(t, err, client.ErrNotFound)
	_, err = e.Client.FindIn(t.Context(), "not-an-id", reach.Domains)
	assert.Error(t, err)

	pending, err := e.Client.PendingIn(t.Context(), reach.Domains, e.Identity("alice").Principal)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	assert.Equal(t, id, pending[0].State.ID)
}
