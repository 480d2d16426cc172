package policy_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/writ-dev/writ/policy"
)

func TestDecideResourceState(t *testing.T) {
	s := sample(t, `
@id("frozen")
forbid (principal, action, resource) when { resource.state has frozen && resource.state.frozen == "true" };

@id("freeze-window")
forbid (principal, action == Action::"deploy", resource) when { context.domain_state has freeze && context.domain_state["freeze"] == "on" };
`)
	bob := who("acme", "bob", "sre-leads")
	onCall := map[string]string{"on_call": "alice", "incident": "INC-7"}
	incident := map[string]string{"incident_active": "true", "incident": "INC-7"}
	with := func(in policy.Input, res, dom map[string]string) policy.Input {
		in.Context.ResourceState, in.Context.DomainState = res, dom
		return in
	}
	autoApproved := policy.Decision{Outcome: policy.OutcomeAllow, Reasons: []string{"on-call-during-incident"}, MaxTTL: 30 * time.Minute}
	tests := []struct {
		name string
		in   policy.Input
		want policy.Decision
	}{
		{
			name: "no state: an SRE lead has no permit to restart production",
			in:   input(alice, "restart", "prod/db"),
			want: policy.Decision{},
		},
		{
			name: "the on-call lead during an active incident: at once, for 30m at most",
			in:   with(input(alice, "restart", "prod/db"), onCall, incident),
			want: autoApproved,
		},
		{
			name: "another lead, not on call",
			in:   with(input(bob, "restart", "prod/db"), onCall, incident),
			want: policy.Decision{},
		},
		{
			name: "on call, but no incident",
			in:   with(input(alice, "restart", "prod/db"), onCall, nil),
			want: policy.Decision{},
		},
		{
			name: "on call, incident over",
			in:   with(input(alice, "restart", "prod/db"), onCall, map[string]string{"incident_active": "false"}),
			want: policy.Decision{},
		},
		{
			name: "incident, on call elsewhere: state is per resource",
			in:   with(input(alice, "restart", "prod/api"), nil, incident),
			want: policy.Decision{},
		},
		{
			name: "incident and on call outside production",
			in:   with(input(alice, "restart", "staging/db"), onCall, incident),
			want: policy.Decision{},
		},
		{
			name: "the on-call lead of another domain with the same name",
			in:   with(input(who("other", "alice", "sre-leads"), "restart", "prod/db"), onCall, incident),
			want: policy.Decision{},
		},
		{
			name: "a forbid on resource state wins over the on-call permit",
			in:   with(input(alice, "restart", "prod/db"), map[string]string{"on_call": "alice", "frozen": "true"}, incident),
			want: policy.Decision{Reasons: []string{"frozen"}},
		},
		{
			name: "a forbid on domain state",
			in:   with(input(bot, "deploy", "staging/web"), nil, map[string]string{"freeze": "on"}),
			want: policy.Decision{Reasons: []string{"freeze-window"}},
		},
		{
			name: "unrelated domain state changes nothing",
			in:   with(input(bot, "deploy", "staging/web"), map[string]string{"owner": "team-a"}, map[string]string{"freeze": "off"}),
			want: policy.Decision{Outcome: policy.OutcomeAllow, Reasons: []string{"bots-deploy-staging"}, MaxTTL: 10 * time.Minute},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, s.Decide(tt.in))
		})
	}
}

// Reading a state attribute that is not there is an evaluation error, and
// so a deny, even under a permit that would otherwise allow.
func TestDecideStateMissingAttributeDenies(t *testing.T) {
	s := sample(t, `@id("careless") permit (principal, action == Action::"restart", resource) when { resource.state.on_call == principal.name };`)
	d := s.Decide(input(alice, "restart", "prod/db"))
	assert.Equal(t, policy.OutcomeDeny, d.Outcome)
	assert.NotEmpty(t, d.Errors)

	d = s.Decide(input(carol, "restart", "dev/db"))
	assert.Equal(t, policy.OutcomeDeny, d.Outcome, "an evaluation error denies whatever else permits")
	assert.Contains(t, d.Reasons, "developers-own-dev")
}

func TestContextRecordState(t *testing.T) {
	c := policy.Context{
		Time:          t0,
		ResourceState: map[string]string{"on_call": "alice"},
		DomainState:   map[string]string{"incident_active": "true"},
	}
	r := c.Record()
	assert.Equal(t, map[string]any{"on_call": "alice"}, r["resource_state"])
	assert.Equal(t, map[string]any{"incident_active": "true"}, r["domain_state"])

	r = policy.Context{Time: t0}.Record()
	assert.NotContains(t, r, "resource_state", "absent means empty")
	assert.NotContains(t, r, "domain_state")
}
