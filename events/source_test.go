package events_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
)

// The source URIs are a wire format: these are the bytes stored events
// carry, and must not change.
func TestSources(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{events.ComponentSource("acme", identity.RolePolicy), "writ://acme/policy"},
		{events.ComponentSource("acme", identity.RoleApproval), "writ://acme/approval"},
		{events.ComponentSource("acme", identity.RoleIssuer), "writ://acme/issuer"},
		{events.ComponentSource("acme", identity.RoleAuditor), "writ://acme/auditor"},
		{events.PrincipalSource("acme", "alice"), "writ://acme/principals/alice"},
		{events.PrincipalSource("globex", "deploy-bot"), "writ://globex/principals/deploy-bot"},
		{events.RedeemerSource("acme", "deployer"), "writ://acme/redeemer/deployer"},
		{events.RedeemerSource("acme", "db/operator x"), "writ://acme/redeemer/db%2Foperator%20x"},
	} {
		assert.Equal(t, tt.want, tt.got)
	}
}
