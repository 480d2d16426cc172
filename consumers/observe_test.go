package consumers_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// The timer stream's schedules are the requests waiting for approvers
// (what writ_requests_pending counts): a request approved, denied or
// withdrawn leaves none behind to fire at its deadline.
func TestSettledRequestsLeaveNoTimer(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	timers, err := js.Stream(t.Context(), consumers.DefaultTimersStream)
	require.NoError(t, err)
	waiting := func() []string {
		info, err := timers.Info(t.Context(), jetstream.WithSubjectFilter(consumers.PendingFilter(writtest.Domain)))
		require.NoError(t, err)
		var out []string
		for s := range info.State.Subjects {
			out = append(out, s)
		}
		return out
	}
	eventually := func(n int) {
		t.Helper()
		require.Eventually(t, func() bool { return len(waiting()) == n }, 10*time.Second, 20*time.Millisecond, "want %d schedules, have %v", n, waiting())
	}

	approved := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	denied := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/api"})
	withdrawn := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/web"})
	for _, id := range []string{approved, denied, withdrawn} {
		e.Pending(id)
	}
	eventually(3)

	e.Vote("alice", approved, true, "")
	e.Vote("bob", approved, true, "")
	require.Equal(t, request.StatusGranted, e.Settle(approved).State.Status)
	eventually(2)

	e.Vote("bob", denied, false, "release freeze")
	require.Equal(t, request.StatusDenied, e.Settle(denied).State.Status)
	eventually(1)

	_, err = e.Client.Revoke(t.Context(), e.Identity("carol"), writtest.Domain, withdrawn, "not needed")
	require.NoError(t, err)
	require.Equal(t, request.StatusRevoked, e.Settle(withdrawn).State.Status)
	eventually(0)
	assert.Empty(t, waiting())
}
