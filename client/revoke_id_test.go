package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/internal/writtest"
)

// Revoke takes a request id, and only one: "*" would read every request of
// the domain as one history and sign a revocation for all of them. It is
// refused before anything is read or appended, as Load refuses it.
func TestRevokeRefusesWhatIsNotAnID(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	carol := e.Identity("carol")
	_, err := e.Client.Request(t.Context(), carol, client.Spec{Domain: writtest.Domain, Action: "restart", Resource: "prod/db", Reason: "r"})
	require.NoError(t, err)
	for _, id := range []string{"*", ">", "a.b", ""} {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := e.Client.Revoke(ctx, carol, writtest.Domain, id, "test")
		cancel()
		assert.ErrorIs(t, err, client.ErrNotAnID, "%q", id)
	}
}
