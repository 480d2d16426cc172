package consumers_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
	"github.com/writ-dev/writ/state"
)

// TestStateAutoApprovesOnCallDuringIncident runs the sample policy
// on-call-during-incident: the on-call SRE lead's own restart is granted at
// once while the domain has an active incident, and only then.
func TestStateAutoApprovesOnCallDuringIncident(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	ctx := t.Context()

	// A watcher of our own, to know the state has been pushed out before
	// asking: the pipeline's watcher hears of it by the same push.
	seen := state.NewWatcher(js)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = seen.Run(wctx) }()
	require.NoError(t, seen.WaitReady(ctx))
	converged := func(want map[string]string, domain bool) {
		t.Helper()
		require.Eventually(t, func() bool {
			got := seen.Get(writtest.Domain, "prod/db")
			if domain {
				got = seen.Domain(writtest.Domain)
			}
			return len(got) == len(want) && (len(want) == 0 || got["on_call"] == want["on_call"] && got["incident_active"] == want["incident_active"])
		}, 5*time.Second, 5*time.Millisecond)
	}
	restart := client.Spec{Action: "restart", Resource: "prod/db", Reason: "replication stuck"}
	denied := func(name string) *client.Request {
		t.Helper()
		r := e.Settle(e.Request(name, restart))
		require.Equal(t, request.StatusDenied, r.State.Status)
		assert.Equal(t, []string{"requested", "evaluated"}, writtest.Kinds(r))
		assert.Equal(t, events.OutcomeDeny, r.State.Evaluation.Outcome)
		assert.Empty(t, r.State.Evaluation.Errors)
		return r
	}

	// No state: no policy lets an SRE lead restart production.
	r := denied("alice")
	assert.NotContains(t, r.State.Evaluation.Context, "resource_state")
	assert.NotContains(t, r.State.Evaluation.Context, "domain_state")

	// On call, but no incident yet.
	onCall := map[string]string{"on_call": "alice", "incident": "INC-7"}
	require.NoError(t, state.Set(ctx, js, writtest.Domain, "prod/db", onCall))
	converged(onCall, false)
	denied("alice")

	// The incident opens: alice's restart is granted at once.
	incident := map[string]string{"incident_active": "true", "incident": "INC-7"}
	require.NoError(t, state.Set(ctx, js, writtest.Domain, "", incident))
	converged(incident, true)
	r = e.Settle(e.Request("alice", restart))
	require.Equal(t, request.StatusGranted, r.State.Status, "%+v", r.State.Evaluation)
	assert.Equal(t, []string{"requested", "evaluated", "granted"}, writtest.Kinds(r))
	assert.Equal(t, []string{"on-call-during-incident"}, r.State.Evaluation.Reasons)
	assert.Equal(t, int64(30*60), r.State.Evaluation.MaxTTLSeconds)
	// The evaluated event keeps the state it decided on.
	ev := r.Records[1].Data.(*events.Evaluated)
	assert.Equal(t, map[string]any{"on_call": "alice", "incident": "INC-7"}, ev.Context["resource_state"])
	assert.Equal(t, map[string]any{"incident_active": "true", "incident": "INC-7"}, ev.Context["domain_state"])

	// Bob is an SRE lead too, but not on call.
	r = denied("bob")
	assert.Equal(t, map[string]any{"on_call": "alice", "incident": "INC-7"}, r.State.Evaluation.Context["resource_state"])

	// Another resource has no on-call state of its own.
	r = e.Settle(e.Request("alice", client.Spec{Action: "restart", Resource: "prod/api"}))
	assert.Equal(t, request.StatusDenied, r.State.Status)

	// The incident closes: back to no permit.
	require.NoError(t, state.Delete(ctx, js, writtest.Domain, ""))
	converged(nil, true)
	denied("alice")
}

// Unreadable state denies, and says why in the evaluated event.
func TestStateMalformedDenies(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, state.Set(ctx, js, writtest.Domain, "staging/web", map[string]string{"owner": "web"}))
	key, err := state.Key(writtest.Domain, "staging/web")
	require.NoError(t, err)
	kv, err := js.KeyValue(ctx, state.Bucket)
	require.NoError(t, err)
	_, err = kv.Put(ctx, key, []byte(`not json`))
	require.NoError(t, err)

	// The bot's deploy to staging, otherwise granted at once, is denied as
	// soon as the pipeline has heard of the bad entry.
	var r *client.Request
	require.Eventually(t, func() bool {
		r = e.Settle(e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"}))
		return r.State.Status != request.StatusGranted
	}, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, request.StatusDenied, r.State.Status)
	require.Len(t, r.State.Evaluation.Errors, 1)
	assert.Contains(t, r.State.Evaluation.Errors[0], "malformed")
	assert.Empty(t, r.State.Evaluation.Reasons, "no policy was evaluated")
}
