package policy_test

import (
	"os"
	"path/filepath"
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
