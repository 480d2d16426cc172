package consumers_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// An input that makes a component fail every time, in a way no retry
// fixes, is given up on after PoisonAfter deliveries: answered on the
// record (a request is rejected as unprocessable, so its requester learns)
// and no longer delivered. Requests behind it are not held up meanwhile.
func TestPoisonInputIsAnsweredAndDropped(t *testing.T) {
	consumers.SetBeforeDecide(func(r events.Record) {
		if d, ok := r.Data.(*events.Requested); ok && strings.HasPrefix(d.Resource, "staging/poison") {
			panic("this input breaks the policy component")
		}
	})
	t.Cleanup(func() { consumers.SetBeforeDecide(nil) })
	e := writtest.Start(t, writtest.Options{})

	poison := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/poison"})
	fine := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	assert.Equal(t, request.StatusGranted, e.Settle(fine).State.Status, "not held up behind the poison")

	r := e.Await(poison, 30*time.Second, client.Settled)
	require.Equal(t, request.StatusRejected, r.State.Status)
	assert.Equal(t, consumers.CodeUnprocessable, r.State.Rejection.Code)
	assert.Contains(t, r.State.Rejection.Reason, "this input breaks the policy component")
	assert.Equal(t, []string{"requested", "rejected"}, writtest.Kinds(r))
}
