package audit_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/policy"
)

// rewriteEvaluation re-seals the named request's evaluation with the real
// policy key once edit has changed it, re-seals the rest of its history
// with the real keys, and makes the checkpoints again: a rewrite whose
// signatures, chains, invariants and checkpoints all hold, which only
// re-evaluation can see. It returns the trail and the evaluation's index.
func rewriteEvaluation(t *testing.T, r *keyed, msgs []events.Message, name string, edit func(d *events.Draft, ev *events.Evaluated)) int {
	t.Helper()
	i := locate(t, r, msgs, name, events.KindEvaluated, nil)
	before := msgs[i].Body
	msgs[i] = reseal(t, msgs[i], r.env.Runtime.PolicyKey, func(d *events.Draft) { edit(d, d.Data.(*events.Evaluated)) })
	require.NotEqual(t, before, msgs[i].Body, "the rewrite changed the evaluation")
	rechain(t, msgs, i, keyring(t, r))
	recheckpoint(t, r, msgs)
	return i
}

// requireReeval checks that the only error is a re-evaluation finding on
// the evaluation of request id at seq, its problem saying each of says.
func requireReeval(t *testing.T, rep *audit.Report, id string, seq uint64, says ...string) {
	t.Helper()
	errs := errorsOf(rep)
	require.Len(t, errs, 1, "errors: %v", errs)
	f := errs[0]
	assert.Equal(t, audit.CheckReeval, f.Check)
	assert.Equal(t, seq, f.Seq)
	assert.Equal(t, id, f.RequestID)
	assert.Equal(t, events.KindEvaluated.String(), f.Kind)
	for _, s := range says {
		assert.Contains(t, f.Problem, s)
	}
}

// An evaluation the recorded policy does not give — another outcome, a
// policy version the trail never recorded, a context or requester that are
// not the request's — is found by re-evaluation, and by nothing else once
// the rest of the trail is re-sealed around it.
func TestReevaluationFindsWhatThePolicyDoesNotGive(t *testing.T) {
	r := keyedShared(t)
	opts := audit.Options{Bundle: r.env.Runtime.Bundle, Stream: "WRIT"}

	// The rewriting alone leaves a trail that verifies: here it only
	// moves the evaluation's own claim of when it was made.
	msgs := cloneTrail(r.msgs)
	rewriteEvaluation(t, r, msgs, "auto", func(d *events.Draft, _ *events.Evaluated) { d.Time = d.Time.Add(time.Millisecond) })
	rep := verify(msgs, opts)
	logFindings(t, rep)
	require.True(t, rep.OK(), "a rewrite that changes no decision")
	require.EqualValues(t, 5, rep.Reevaluated)

	for _, tc := range []struct {
		name, req string
		edit      func(ev *events.Evaluated)
		says      []string
	}{{
		name: "a denial recorded as allowed", req: "denied-by-policy",
		edit: func(ev *events.Evaluated) { ev.Outcome = events.OutcomeAllow },
		says: []string{"recorded allow by [no-prod-database-drop]", "the recorded policy gives deny by [no-prod-database-drop]"},
	}, {
		name: "a longer max ttl", req: "auto",
		edit: func(ev *events.Evaluated) { ev.MaxTTLSeconds = 3600 },
		says: []string{"(max ttl 3600s", "(max ttl 600s"},
	}, {
		name: "one approver where the flow needs two", req: "denied",
		edit: func(ev *events.Evaluated) { ev.Flows[0].Stages[0].Required = 1 },
		says: []string{"recorded review by [developers-restart-prod]", "gives review by [developers-restart-prod]"},
	}, {
		name: "a policy version the trail never recorded", req: "auto",
		edit: func(ev *events.Evaluated) { ev.PolicyDigest = events.Digest([]byte("no such policy")) },
		says: []string{"which the trail does not record before it"},
	}, {
		name: "another urgency than the request's", req: "auto",
		edit: func(ev *events.Evaluated) { ev.Context["urgency"] = "critical" },
		says: []string{"the evaluated context is not the request's"},
	}, {
		name: "other parameters than the request's", req: "auto",
		edit: func(ev *events.Evaluated) { ev.Context["params"] = map[string]any{"version": "3"} },
		says: []string{"the evaluated context is not the request's"},
	}, {
		name: "the requester in other groups", req: "denied-by-policy",
		edit: func(ev *events.Evaluated) { ev.Principal.Groups = []string{"sre-leads"} },
		says: []string{"evaluated acme/carol (key", "groups [sre-leads]); the requester is acme/carol", "groups [developers]"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := cloneTrail(r.msgs)
			i := rewriteEvaluation(t, r, msgs, tc.req, func(_ *events.Draft, ev *events.Evaluated) { tc.edit(ev) })
			rep := verify(msgs, opts)
			logFindings(t, rep)
			requireReeval(t, rep, r.ids[tc.req], msgs[i].Seq, tc.says...)
		})
	}
}

// freezeBots is the run's policies with one more file that forbids bots to
// deploy: a second policy version.
func freezeBots(t *testing.T, r *keyed) *policy.Set {
	t.Helper()
	main, ok := strings.CutPrefix(string(r.env.Runtime.Policies.Source()), "-- main.cedar\n")
	require.True(t, ok)
	require.NotContains(t, main, "\n-- ", "the sample policies are one file")
	set, err := policy.Load(map[string][]byte{
		"main.cedar":   []byte(strings.TrimSuffix(main, "\n")),
		"freeze.cedar": []byte("@id(\"freeze-bot-deploys\")\nforbid (principal in Group::\"acme/bots\", action == Action::\"deploy\", resource);\n"),
	})
	require.NoError(t, err)
	require.NotEqual(t, r.env.Runtime.Policies.Digest(), set.Digest())
	return set
}

// Each decision is re-evaluated under the policy version it names, as the
// trail recorded it before the decision.
func TestReevaluationUsesTheVersionRecorded(t *testing.T) {
	r := keyedShared(t)
	opts := audit.Options{}
	freeze := freezeBots(t, r)
	deploy := client.Spec{Action: "deploy", Resource: "staging/web"}

	t.Run("decided under a later version", func(t *testing.T) {
		c := newCrafter(t, r)
		c.record(freeze)
		c.set = freeze
		ev := c.evaluate(c.request("deploy-bot", deploy))
		require.Equal(t, events.OutcomeDeny, ev.Outcome)
		require.Equal(t, []string{"freeze-bot-deploys"}, ev.Reasons)
		rep := c.verify(opts)
		requireErrors(t, rep)
		assert.EqualValues(t, 6, rep.Reevaluated)
	})

	t.Run("the earlier version's decision, naming the later", func(t *testing.T) {
		c := newCrafter(t, r)
		c.record(freeze)
		id := c.request("deploy-bot", deploy)
		ev := c.decide(id)
		require.Equal(t, events.OutcomeAllow, ev.Outcome)
		ev.PolicyDigest = freeze.Digest()
		seq := c.emit(id, events.KindEvaluated, ev)
		requireReeval(t, c.verify(opts), id, seq, "recorded allow by [bots-deploy-staging]", "gives deny by [freeze-bot-deploys]")
	})

	t.Run("a version recorded only after the decision naming it", func(t *testing.T) {
		c := newCrafter(t, r)
		i := rewriteEvaluation(t, r, c.msgs, "auto", func(_ *events.Draft, ev *events.Evaluated) { ev.PolicyDigest = freeze.Digest() })
		c.record(freeze)
		requireReeval(t, c.verify(opts), r.ids["auto"], c.msgs[i].Seq, "which the trail does not record before it")
	})
}

// Re-evaluation does not take the time an evaluation records ("now" in its
// context) on its word: recorded ten hours late, with its deadline moved by
// as much, the evaluation would re-evaluate the same — and votes ten hours
// after the real deadline would count. The recorded time must be when the
// evaluation was stored, give or take audit.ClockSkew.
func TestReevaluationChecksTheRecordedTime(t *testing.T) {
	r := keyedShared(t)
	msgs := cloneTrail(r.msgs)
	i := rewriteEvaluation(t, r, msgs, "denied", func(_ *events.Draft, ev *events.Evaluated) {
		ctx, err := policy.ContextFromRecord(ev.Context)
		require.NoError(t, err)
		ev.Context["now"] = ctx.Time.Add(10 * time.Hour).UTC().Format(time.RFC3339Nano)
		later := ev.ExpiresAt.Add(10 * time.Hour)
		ev.ExpiresAt = &later
	})
	rep := verify(msgs, audit.Options{Bundle: r.env.Runtime.Bundle, Stream: "WRIT"})
	logFindings(t, rep)
	requireReeval(t, rep, r.ids["denied"], msgs[i].Seq)
}
