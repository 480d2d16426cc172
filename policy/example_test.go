package policy_test

import (
	"fmt"
	"time"

	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/policy"
)

func ExampleSet_Decide() {
	set, err := policy.Load(map[string][]byte{"main.cedar": []byte(`
@id("developers-restart-prod")
@flow("two-sre-leads")
@max_ttl("30m")
permit (principal in Group::"acme/developers", action == Action::"restart", resource)
when { resource.path like "prod/*" };

@id("no-prod-database-drop")
forbid (principal, action == Action::"drop-database", resource)
when { resource.path like "prod/*" };
`)})
	if err != nil {
		fmt.Println(err)
		return
	}
	carol := identity.Principal{Domain: "acme", Name: "carol", Groups: []string{"developers"}}
	now := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	for _, action := range []string{"restart", "drop-database", "deploy"} {
		d := set.Decide(policy.Input{
			Principal: carol, Action: action, Domain: "acme", Resource: "prod/db",
			Context: policy.Context{Urgency: "normal", Origin: "acme", Time: now},
		})
		fmt.Println(action, d.Outcome, d.Reasons, d.Flows, d.MaxTTL)
	}
	// Output:
	// restart review [developers-restart-prod] [two-sre-leads] 30m0s
	// drop-database deny [no-prod-database-drop] [] 0s
	// deploy deny [] [] 0s
}

func ExampleFlows_Resolve() {
	flows, err := policy.ParseFlows([]byte(`{"flows": {
	  "two-sre-leads": {"stages": [{"name": "leads", "groups": ["sre-leads"], "required": 2, "deadline": "30m"}]}
	}}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	requested := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	resolved, deadline, err := flows.Resolve([]string{"two-sre-leads"}, requested)
	fmt.Println(resolved[0].Stages[0].Required, resolved[0].Stages[0].Groups, deadline.Format(time.TimeOnly), err)
	// Output:
	// 2 [sre-leads] 09:30:00 <nil>
}
