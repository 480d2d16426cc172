package consumers_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/state"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// setState asks, as name, for a state change, and waits for the answer.
func setState(t *testing.T, e *writtest.Env, name string, ch client.StateChange) *client.Request {
	t.Helper()
	id, err := e.Client.SetState(t.Context(), e.Identity(name), writtest.Domain, ch)
	require.NoError(t, err)
	return e.AwaitAsk(id, 10*time.Second)
}

// stateBucket opens the bucket with the test's connection, which has
// every right: what the pipeline does not stop, the test can do.
func stateBucket(t *testing.T, e *writtest.Env) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	kv, err := js.KeyValue(t.Context(), state.Bucket)
	require.NoError(t, err)
	return kv
}

// applied waits until the bucket holds attrs under the key of path (nil:
// no entry), and returns the entry's revision.
func applied(t *testing.T, kv jetstream.KeyValue, path string, attrs map[string]string) uint64 {
	t.Helper()
	key, err := state.Key(writtest.Domain, path)
	require.NoError(t, err)
	var rev uint64
	require.Eventually(t, func() bool {
		e, err := kv.Get(t.Context(), key)
		if attrs == nil {
			return errors.Is(err, jetstream.ErrKeyNotFound)
		}
		want, _ := state.Encode(attrs)
		if err != nil || string(e.Value()) != string(want) {
			return false
		}
		rev = e.Revision()
		return true
	}, 5*time.Second, 5*time.Millisecond, "the bucket holds %s: %v", key, attrs)
	return rev
}

// refusedFor returns the refusal of a history's ask.
func refusedFor(t *testing.T, r *client.Request) *events.Refused {
	t.Helper()
	for _, rec := range r.Records {
		if d, ok := rec.Data.(*events.Refused); ok {
			require.True(t, rec.Valid(), "%v", rec.Err)
			return d
		}
	}
	t.Fatalf("no refusal in %v", writtest.Kinds(r))
	return nil
}

// An ask the policies do not allow is refused, and the trail says why;
// nothing reaches the bucket.
func TestStateSetRefusedAndRecorded(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	kv := stateBucket(t, e)
	for _, tc := range []struct {
		name, who string
		ch        client.StateChange
		why       string
	}{
		{"a developer on production", "carol", client.StateChange{Path: "prod/db", Attrs: map[string]string{"on_call": "carol"}},
			"acme/carol may not set the state of acme/prod/db"},
		{"a developer declaring an incident", "carol", client.StateChange{Attrs: map[string]string{"incident_active": "true"}},
			"acme/carol may not set the state of acme"},
		{"a developer deleting", "carol", client.StateChange{Path: "prod/db", Delete: true},
			"acme/carol may not set the state of acme/prod/db"},
		{"an SRE lead putting herself on call", "alice", client.StateChange{Path: "prod/db", Attrs: map[string]string{"on_call": "alice"}},
			"acme/alice may not set the state of acme/prod/db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := setState(t, e, tc.who, tc.ch)
			assert.Nil(t, r.Series.StateChange().Done)
			assert.Equal(t, []string{"state", "refused"}, writtest.Kinds(r))
			d := refusedFor(t, r)
			assert.Equal(t, "not-authorized", d.Code)
			assert.Equal(t, "state", d.RefKind)
			assert.Contains(t, d.Reason, tc.why)
			// The refusal is the pipeline's last word on the ask: had it
			// been applied, a stated event would come before it.
			key, err := state.Key(writtest.Domain, tc.ch.Path)
			require.NoError(t, err)
			_, err = kv.Get(t.Context(), key)
			assert.ErrorIs(t, err, jetstream.ErrKeyNotFound)
		})
	}
}

// An authorized change is recorded, then applied; a decision reads it and
// records the revision it read; merges and deletions go the same way.
func TestStateSetRecordedAppliedAndRead(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	kv := stateBucket(t, e)
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	ctx := t.Context()
	// A watcher of our own, to know the bucket's change has been pushed
	// out before asking: the pipeline's watcher hears of it by the same push.
	seen := state.NewWatcher(js)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = seen.Run(wctx) }()
	require.NoError(t, seen.WaitReady(ctx))
	heard := func(path string, rev uint64) {
		t.Helper()
		require.Eventually(t, func() bool {
			f, err := seen.Lookup(writtest.Domain, "prod/db")
			key, _ := state.Key(writtest.Domain, path)
			return err == nil && f.Revisions[key] == rev
		}, 5*time.Second, 5*time.Millisecond)
	}
	restart := client.Spec{Action: "restart", Resource: "prod/db", Reason: "replication stuck"}

	// No state: no policy lets an SRE lead restart production, and the
	// decision says it read two entries that were not there.
	r := e.Settle(e.Request("alice", restart))
	require.Equal(t, request.StatusDenied, r.State.Status)
	assert.Equal(t, map[string]uint64{"acme.prod.db": 0, "acme._domain": 0}, r.State.Evaluation.StateRevisions)

	// Bob, an SRE lead, says alice is on call: recorded, then applied.
	onCall := map[string]string{"on_call": "alice", "incident": "INC-7"}
	r = setState(t, e, "bob", client.StateChange{Path: "prod/db", Attrs: onCall, Reason: "rotation"})
	require.NotNil(t, r.Series.StateChange().Done, "%v", r.State.Answered)
	assert.Equal(t, []string{"state", "stated"}, writtest.Kinds(r))
	assert.Equal(t, onCall, r.Series.StateChange().Done.Attrs)
	assert.Equal(t, "rotation", r.Series.StateChange().Done.Reason)
	assert.Equal(t, "acme/bob", r.Series.StateChange().Done.By.ID())
	resRev := applied(t, kv, "prod/db", onCall)

	// The paging bot opens an incident on the domain's own entry.
	incident := map[string]string{"incident_active": "true"}
	r = setState(t, e, "deploy-bot", client.StateChange{Attrs: incident})
	require.NotNil(t, r.Series.StateChange().Done, "%v", r.State.Answered)
	assert.Equal(t, "", r.Series.StateChange().Done.Path)
	domRev := applied(t, kv, "", incident)
	heard("", domRev)
	heard("prod/db", resRev)

	// Alice's restart is granted at once; the decision records the state
	// and the revisions it read.
	r = e.Settle(e.Request("alice", restart))
	require.Equal(t, request.StatusGranted, r.State.Status, "%+v", r.State.Evaluation)
	ev := r.State.Evaluation
	assert.Equal(t, []string{"on-call-during-incident"}, ev.Reasons)
	assert.Equal(t, map[string]any{"on_call": "alice", "incident": "INC-7"}, ev.Context["resource_state"])
	assert.Equal(t, map[string]any{"incident_active": "true"}, ev.Context["domain_state"])
	assert.Equal(t, map[string]uint64{"acme.prod.db": resRev, "acme._domain": domRev}, ev.StateRevisions)

	// A merge keeps what it does not name, and records the whole entry.
	r = setState(t, e, "bob", client.StateChange{Path: "prod/db", Attrs: map[string]string{"runbook": "https://wiki/db"}, Merge: true})
	require.NotNil(t, r.Series.StateChange().Done, "%v", r.State.Answered)
	merged := map[string]string{"on_call": "alice", "incident": "INC-7", "runbook": "https://wiki/db"}
	assert.Equal(t, merged, r.Series.StateChange().Done.Attrs)
	resRev = applied(t, kv, "prod/db", merged)

	// The incident closes: the entry goes, and the decision says so.
	r = setState(t, e, "deploy-bot", client.StateChange{Delete: true, Reason: "INC-7 resolved"})
	require.NotNil(t, r.Series.StateChange().Done, "%v", r.State.Answered)
	assert.Equal(t, events.StateDelete, r.Series.StateChange().Done.Op)
	applied(t, kv, "", nil)
	heard("", 0)
	heard("prod/db", resRev)
	r = e.Settle(e.Request("alice", restart))
	require.Equal(t, request.StatusDenied, r.State.Status)
	assert.Equal(t, map[string]uint64{"acme.prod.db": resRev, "acme._domain": 0}, r.State.Evaluation.StateRevisions)
}

// The trail is the authority over the bucket: an entry deleted or changed
// there by someone with every right is put back as the trail says; one the
// trail knows nothing of is deleted (a policy must read only recorded
// state).
func TestStateBucketFollowsTheTrail(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	kv := stateBucket(t, e)
	ctx := t.Context()
	onCall := map[string]string{"on_call": "alice"}
	require.NotNil(t, setState(t, e, "bob", client.StateChange{Path: "prod/db", Attrs: onCall}).Series.StateChange().Done)
	applied(t, kv, "prod/db", onCall)
	key, err := state.Key(writtest.Domain, "prod/db")
	require.NoError(t, err)

	require.NoError(t, kv.Delete(ctx, key))
	applied(t, kv, "prod/db", onCall)

	forged, err := state.Encode(map[string]string{"on_call": "mallory"})
	require.NoError(t, err)
	_, err = kv.Put(ctx, key, forged)
	require.NoError(t, err)
	applied(t, kv, "prod/db", onCall)

	// An entry no event records is deleted: the attack (an
	// on-call entry written around the trail) must not reach a policy.
	other, err := state.Key(writtest.Domain, "prod/api")
	require.NoError(t, err)
	unrecorded, err := state.Encode(map[string]string{"on_call": "alice"})
	require.NoError(t, err)
	_, err = kv.Put(ctx, other, unrecorded)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := kv.Get(ctx, other)
		return errors.Is(err, jetstream.ErrKeyNotFound)
	}, 10*time.Second, 10*time.Millisecond, "the unrecorded entry is deleted")
}

// Unreadable state denies, and says why in the evaluated event.
func TestStateMalformedDenies(t *testing.T) {
	// Without the approval component, whose keeper would delete the
	// entry: no recorded state can be malformed, so this is what the
	// policy does with one written around the trail until then.
	e := writtest.Start(t, writtest.Options{NoServe: true})
	e.ServeOnly("policy", "issuer")
	kv := stateBucket(t, e)
	ctx := t.Context()
	key, err := state.Key(writtest.Domain, "staging/web")
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
	assert.NotZero(t, r.State.Evaluation.StateRevisions[key], "the revision of the entry that could not be read")
}
