package notify_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// The helpers below are the consumers tests' (lock_test.go,
// breakglass_test.go): the notifier's tests drive the same requests.

// lock asks, as name, to lock or unlock a target, and waits for the answer.
func lock(t *testing.T, e *writtest.Env, name string, target events.LockTarget, unlock bool) *client.Request {
	t.Helper()
	id, err := e.Client.Lock(t.Context(), e.Identity(name), writtest.Domain, target, unlock, "test")
	require.NoError(t, err)
	return e.AwaitAsk(id, 10*time.Second)
}

const breakGlassPolicies = `
@id("critical-break-glass")
@break_glass("true")
@flow("two-sre-leads")
@max_ttl("10m")
permit (principal in Group::"acme/developers", action == Action::"restart", resource)
when { context.urgency == "critical" && context.ticket like "INC-*" };

@id("approvers-may-approve")
permit (principal, action == Action::"approve", resource);
`

// breakGlass makes carol's break-glass request and waits for its grant
// and alert.
func breakGlass(t *testing.T, e *writtest.Env) (string, *client.Request) {
	t.Helper()
	id := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db", Urgency: "critical", Ticket: "INC-7", Reason: "db down", TTL: time.Hour})
	r := e.Await(id, 10*time.Second, func(s request.State) bool {
		return s.Status == request.StatusGranted && len(s.Alerts) > 0
	})
	return id, r
}
