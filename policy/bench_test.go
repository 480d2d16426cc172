package policy

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cedar-policy/cedar-go"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/identity"
)

// The decisions are benchmarked from the outside in: Evaluate (what the
// policy component records), Decide (the entities, context and Cedar call)
// and IsAuthorized alone, so that the differences show where the time goes.
// An internal test, for the last one's prebuilt Cedar request.

// benchCases are the sample policies' two outcomes of the automated path,
// with the input the policy component builds (consumers/policy.go).
func benchCases() []benchCase {
	in := func(p identity.Principal, action, resource string) Input {
		return Input{Principal: p, Action: action, Domain: "acme", Resource: resource, Context: Context{
			Urgency: "normal", Origin: p.Domain, Time: time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC),
		}}
	}
	key := "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"
	return []benchCase{
		{"allow", in(identity.Principal{Domain: "acme", Name: "deploy-bot", Key: key, Groups: []string{"bots"}}, "deploy", "staging/web")},
		{"review", in(identity.Principal{Domain: "acme", Name: "carol", Key: key, Groups: []string{"developers"}}, "restart", "prod/db")},
	}
}

type benchCase struct {
	name string
	in   Input
}

// benchSample loads testdata, which is what `writ init` writes for acme
// (config's tests check that the two stay the same).
func benchSample(b *testing.B) (*Set, *Flows) {
	s, err := LoadDir("testdata")
	require.NoError(b, err)
	f, err := LoadFlowsFile(filepath.Join("testdata", "flows.json"))
	require.NoError(b, err)
	return s, f
}

// benchOutcomes runs each case as a sub-benchmark of b, checking first
// that it decides as its name says.
func benchOutcomes(b *testing.B, run func(b *testing.B, s *Set, f *Flows, in Input)) {
	s, f := benchSample(b)
	for _, c := range benchCases() {
		in := c.in
		require.Equal(b, c.name, s.Decide(in).Outcome.String())
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			run(b, s, f, in)
		})
	}
}

func BenchmarkEvaluate(b *testing.B) {
	benchOutcomes(b, func(b *testing.B, s *Set, f *Flows, in Input) {
		for b.Loop() {
			Evaluate(s, f, in, nil)
		}
	})
}

func BenchmarkDecide(b *testing.B) {
	benchOutcomes(b, func(b *testing.B, s *Set, _ *Flows, in Input) {
		for b.Loop() {
			s.Decide(in)
		}
	})
}

// Decide on a resource not decided on lately (its entity is built, not
// remembered): each iteration takes the next of 8,192 paths, twice what
// the cache holds.
func BenchmarkDecideNewResource(b *testing.B) {
	benchOutcomes(b, func(b *testing.B, s *Set, _ *Flows, in Input) {
		paths := make([]string, 8192)
		for i := range paths {
			paths[i] = fmt.Sprintf("%s-%d", in.Resource, i)
		}
		i := 0
		for b.Loop() {
			in.Resource = paths[i%len(paths)]
			i++
			s.Decide(in)
		}
	})
}

// The Cedar call alone, on entities and a request built once as Decide
// builds them.
func BenchmarkIsAuthorized(b *testing.B) {
	benchOutcomes(b, func(b *testing.B, s *Set, _ *Flows, in Input) {
		principal, shared := principalEntities(in.Principal)
		entities := &requestEntities{principal: shared, resource: resourceEntity(in.Domain, in.Resource, nil)}
		req := cedar.Request{
			Principal: principal, Action: cedar.NewEntityUID("Action", cedar.String(in.Action)),
			Resource: entities.resource.UID, Context: in.Context.cedar(),
		}
		for b.Loop() {
			if ok, _ := s.ps.IsAuthorized(entities, req); ok != cedar.Allow {
				b.Fatal("denied")
			}
		}
	})
}
