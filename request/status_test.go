package request_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/request"
)

func TestStatus(t *testing.T) {
	tests := []struct {
		status               request.Status
		name                 string
		terminal, pending, g bool
	}{
		{request.StatusNone, "none", false, false, false},
		{request.StatusRequested, "requested", false, false, false},
		{request.StatusPending, "pending", false, true, false},
		{request.StatusAllowed, "allowed", false, false, true},
		{request.StatusApproved, "approved", false, false, true},
		{request.StatusGranted, "granted", true, false, false},
		{request.StatusRejected, "rejected", true, false, false},
		{request.StatusDenied, "denied", true, false, false},
		{request.StatusExpired, "expired", true, false, false},
		{request.StatusRedeemed, "redeemed", true, false, false},
		{request.StatusRevoked, "revoked", true, false, false},
		{request.StatusRefused, "refused", true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.name, tt.status.String())
			got, err := request.ParseStatus(tt.name)
			require.NoError(t, err)
			assert.Equal(t, tt.status, got)
			assert.Equal(t, tt.terminal, tt.status.IsTerminal())
			assert.Equal(t, tt.pending, tt.status.IsPending())
			assert.Equal(t, tt.g, tt.status.AwaitsGrant())
			assert.Equal(t, tt.terminal && tt.status != request.StatusGranted, tt.status.IsClosed(), "closed: terminal, and no grant left to use")
		})
	}
	assert.Equal(t, "status(42)", request.Status(42).String())
	for _, s := range []string{"", "Granted", "status(42)", "cancelled"} {
		got, err := request.ParseStatus(s)
		assert.Error(t, err, "%q", s)
		assert.Equal(t, request.StatusNone, got)
	}
}
