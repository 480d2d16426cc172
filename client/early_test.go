package client_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// A vote cast right after the request, before the pipeline has evaluated
// it, waits for the evaluation and then counts; with no evaluation coming
// it is refused after EvaluationWait, saying why.
func TestAnEarlyVoteWaitsForTheEvaluation(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db", Reason: "stuck"})

	// The voter's client reads through a relay that counts its reads of
	// the stream: the barrier that it has read the request, unevaluated,
	// and reads on, waiting.
	var gets atomic.Int32
	relay, err := e.NC.Subscribe("$RELAY.API.>", func(m *nats.Msg) {
		rest := strings.TrimPrefix(m.Subject, "$RELAY.API.")
		if strings.HasPrefix(rest, "DIRECT.GET.") {
			gets.Add(1)
		}
		_ = e.NC.PublishRequest("$JS.API."+rest, m.Reply, m.Data)
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = relay.Unsubscribe() })
	voter, err := client.New(e.NC, client.Options{Bundle: e.Runtime.Bundle, Home: e.Domain, APIPrefix: "$RELAY.API"})
	require.NoError(t, err)

	type result struct {
		seq uint64
		err error
	}
	done := make(chan result, 1)
	go func() {
		seq, err := voter.Vote(t.Context(), e.Identity("alice"), e.Domain, id, client.Vote{Approve: true})
		done <- result{seq, err}
	}()
	for deadline := time.Now().Add(10 * time.Second); gets.Load() < 2; { // the vote's read, and the wait's first
		select {
		case r := <-done:
			t.Fatalf("the vote ended before the request was evaluated: %v", r.err)
		case <-time.After(time.Millisecond):
		}
		require.True(t, time.Now().Before(deadline), "the vote did not read the request")
	}
	r, err := e.Client.Load(t.Context(), e.Domain, id)
	require.NoError(t, err)
	require.Equal(t, request.StatusRequested, r.State.Status, "not evaluated before the vote read it")

	e.Serve("")
	select {
	case res := <-done:
		require.NoError(t, res.err)
		assert.Positive(t, res.seq)
	case <-time.After(client.EvaluationWait + 5*time.Second):
		t.Fatal("the vote did not end")
	}
	r = e.Await(id, 10*time.Second, func(s request.State) bool { return len(s.Votes) == 1 })
	assert.Equal(t, "acme/alice", r.State.Votes[0].Voter.ID(), "counted")

	// No evaluation comes (no pipeline runs): refused after the wait.
	bare := writtest.Start(t, writtest.Options{NoServe: true})
	other := bare.Request("carol", client.Spec{Action: "restart", Resource: "prod/db", Reason: "stuck"})
	t0 := time.Now()
	_, err = bare.Client.Vote(t.Context(), bare.Identity("alice"), bare.Domain, other, client.Vote{Approve: true})
	assert.ErrorIs(t, err, client.ErrNotPending)
	assert.ErrorContains(t, err, "not evaluated yet")
	assert.GreaterOrEqual(t, time.Since(t0), client.EvaluationWait)
}
