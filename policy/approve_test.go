package policy_test

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/policy"
)

func TestMayApproveWithTheSamplePolicies(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "acme.cedar"))
	require.NoError(t, err)
	set, err := policy.Load(map[string][]byte{"acme.cedar": b})
	require.NoError(t, err)
	lead := identity.Principal{Domain: "acme", Name: "alice", Groups: []string{"sre-leads"}}
	dev := identity.Principal{Domain: "acme", Name: "dave", Groups: []string{"developers"}}
	local := identity.Principal{Domain: "acme", Name: "carol"}
	outsider := identity.Principal{Domain: "alpha", Name: "bot"}
	in := func(approver, requester identity.Principal, resource string) policy.ApproveInput {
		return policy.ApproveInput{Approver: approver, Domain: "acme", RequestID: "r", Requester: requester,
			Action: "restart", Resource: resource, Urgency: "normal", Flow: "f", Stage: "s", Time: time.Now()}
	}
	for _, tc := range []struct {
		name string
		in   policy.ApproveInput
		want policy.Outcome
	}{
		{"a lead, a local request", in(lead, local, "prod/db"), policy.OutcomeAllow},
		{"a developer, a local request", in(dev, local, "prod/db"), policy.OutcomeAllow},
		{"a developer, an outside prod request", in(dev, outsider, "prod/db"), policy.OutcomeDeny},
		{"a lead, an outside prod request", in(lead, outsider, "prod/db"), policy.OutcomeAllow},
		{"a developer, an outside staging request", in(dev, outsider, "staging/web"), policy.OutcomeAllow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, set.MayApprove(tc.in).Outcome)
		})
	}
	// Without any approve permit, nobody may approve.
	none, err := policy.Load(map[string][]byte{"a.cedar": []byte(`permit (principal, action == Action::"read", resource);`)})
	require.NoError(t, err)
	assert.Equal(t, policy.OutcomeDeny, none.MayApprove(in(lead, local, "prod/db")).Outcome)
}

// A principal's entities are shared between decisions: what one decision
// adds (the request an approver answers) must not be seen by the next, and
// decisions for one principal may run at once (go test -race).
func TestDecisionsShareNothingTheyAdd(t *testing.T) {
	set, err := policy.Load(map[string][]byte{"a.cedar": []byte(`
permit (principal, action == Action::"approve", resource);
// Allows only if Request::"acme/r1" is an entity of this decision.
permit (principal, action == Action::"read", resource) when { Request::"acme/r1".flow == "f" };`)})
	require.NoError(t, err)
	alice := identity.Principal{Domain: "acme", Name: "alice", Groups: []string{"sre-leads"}}
	approve := policy.ApproveInput{Approver: alice, Domain: "acme", RequestID: "r1", Requester: identity.Principal{Domain: "acme", Name: "carol"},
		Action: "restart", Resource: "prod/db", Urgency: "normal", Flow: "f", Stage: "s", Time: time.Now()}
	read := policy.Input{Principal: alice, Action: "read", Domain: "acme", Resource: "prod/db", Context: policy.Context{Urgency: "normal", Time: time.Now()}}

	require.Equal(t, policy.OutcomeAllow, set.MayApprove(approve).Outcome)
	assert.Equal(t, policy.OutcomeDeny, set.Decide(read).Outcome, "the request entity of the approval is not in the next decision")

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 50 {
				if i%2 == 0 {
					set.MayApprove(approve)
				} else {
					set.Decide(read)
				}
			}
		})
	}
	wg.Wait()
}
