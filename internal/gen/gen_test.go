package gen_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/gen"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

func TestGeneratedHistoriesFold(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	sum, err := gen.Generate(ctx, e, gen.Options{Requests: 300, Seed: 7})
	require.NoError(t, err)
	t.Logf("%d events in %s: %.0f events/s", sum.Events, sum.Elapsed, sum.Rate())
	require.Len(t, sum.Requests, 300)

	// The mix's shares exactly: 40/20/15/10/10/5 of 300.
	want := map[gen.Outcome]int{gen.AutoGranted: 120, gen.Approved: 60, gen.PolicyDenied: 45, gen.ApproverDenied: 30, gen.Expired: 30, gen.Pending: 15}
	for o, n := range want {
		assert.Len(t, sum.IDs(o), n, "%s", o)
	}

	total := 1 // the policy record
	seen := map[string]bool{}
	for _, g := range sum.Requests {
		require.False(t, seen[g.ID], "ids are distinct")
		seen[g.ID] = true
		r, err := e.Client.Load(ctx, e.Domain, g.ID)
		require.NoError(t, err)
		require.Empty(t, r.Errs, "request %s (%s): every event counts", g.ID, g.Outcome)
		for _, rec := range r.Records {
			require.NoError(t, rec.Err)
		}
		s := r.State
		assert.Equal(t, g.Outcome.Status(), s.Status, "request %s (%s)", g.ID, g.Outcome)
		assert.Equal(t, g.Requester, s.Requester.ID())
		assert.Equal(t, g.Action, s.Request.Action)
		assert.Equal(t, g.Resource, s.Request.Resource)
		assert.True(t, g.RequestedAt.Equal(s.RequestedAt))
		assert.Len(t, r.Records, g.Events)
		var voters []string
		for _, v := range s.Votes {
			voters = append(voters, v.Voter.ID())
		}
		assert.Equal(t, g.Voters, voters)
		switch g.Outcome {
		case gen.Approved:
			assert.Len(t, voters, 2)
		case gen.Expired:
			assert.False(t, s.DecidedAt.Before(s.Deadline()), "expired at or after the deadline")
		}
		if s.Status == request.StatusGranted {
			assert.Equal(t, s.Requester.Key, s.Grant.Holder)
		}
		total += g.Events
	}
	assert.Equal(t, total, sum.Events)

	// The policy set is on record, under its own id.
	rt := e.Runtime
	p, err := e.Client.Load(ctx, e.Domain, events.PolicyID(rt.Policies.Digest(), rt.Flows.Digest()))
	require.NoError(t, err)
	require.NotNil(t, p.Series.Policy().Record)
	assert.Empty(t, p.Errs)

	// The same options plan the same requests (times and ids follow the
	// run's clock).
	again, err := gen.Generate(ctx, e, gen.Options{Requests: 300, Seed: 7})
	require.NoError(t, err)
	for i, g := range again.Requests {
		w := sum.Requests[i]
		assert.NotEqual(t, w.ID, g.ID)
		assert.Equal(t, []any{w.Outcome, w.Requester, w.Action, w.Resource, w.Voters, w.Events},
			[]any{g.Outcome, g.Requester, g.Action, g.Resource, g.Voters, g.Events})
	}
	assert.Equal(t, sumEvents(again), again.Events, "no second policy record")
}

func sumEvents(s *gen.Summary) int {
	n := 0
	for _, r := range s.Requests {
		n += r.Events
	}
	return n
}

func TestGenerateRefusesAnImpossibleMix(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true, Policies: `permit (principal, action, resource);`})
	_, err := gen.Generate(t.Context(), e, gen.Options{Requests: 10, Mix: gen.Mix{gen.Approved: 1}})
	assert.ErrorContains(t, err, "review")
	// Auto-granted requests are what these policies decide for everyone.
	sum, err := gen.Generate(t.Context(), e, gen.Options{Requests: 10, Mix: gen.Mix{gen.AutoGranted: 1}})
	require.NoError(t, err)
	assert.Len(t, sum.IDs(gen.AutoGranted), 10)
	// A policy-denied request that these policies allow fails loudly.
	_, err = gen.Generate(t.Context(), e, gen.Options{Requests: 3, Mix: gen.Mix{gen.PolicyDenied: 1}})
	assert.ErrorContains(t, err, "where the sample policies decide deny")
}

// BenchmarkGenerate appends 1,000 requests per iteration (about 4,500
// events); -benchtime=22x makes 100,000 events.
func BenchmarkGenerate(b *testing.B) {
	e := writtest.Start(b, writtest.Options{NoServe: true})
	var n int
	var took time.Duration
	seed := uint64(0)
	for b.Loop() {
		seed++
		sum, err := gen.Generate(b.Context(), e, gen.Options{Requests: 1000, Seed: seed})
		if err != nil {
			b.Fatal(err)
		}
		n += sum.Events
		took += sum.Elapsed
	}
	b.ReportMetric(float64(n)/took.Seconds(), "events/s")
}
