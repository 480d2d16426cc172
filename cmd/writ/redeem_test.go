package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGrantRedeem(t *testing.T) {
	dir, url := serve(t)
	creds := func(name string) string { return filepath.Join(dir, "creds", name+".creds") }
	common := []string{"--dir", dir, "--server", url}
	cmd := func(args ...string) []string { return append(args, common...) }

	out, errOut, err := writ(t, cmd("request", "--creds", creds("deploy-bot"), "--action", "deploy", "--resource", "staging/web",
		"--param", "version=2", "--wait")...)
	require.NoError(t, err, errOut)
	token := strings.TrimSpace(out)

	// Refusals first: none of them consumes the grant.
	_, _, err = writ(t, cmd("grant", "redeem", token, "--creds", creds("deploy-bot"), "--action", "restart", "--resource", "staging/web", "--param", "version=2")...)
	require.Error(t, err)
	assert.Equal(t, exitNoGrant, exitCode(err))
	assert.Contains(t, err.Error(), "the grant is for another action")
	_, _, err = writ(t, cmd("grant", "redeem", token, "--creds", creds("deploy-bot"), "--action", "deploy", "--resource", "staging/web")...)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the grant binds other parameters")
	_, _, err = writ(t, cmd("grant", "redeem", token, "--creds", creds("carol"), "--action", "deploy", "--resource", "staging/web", "--param", "version=2")...)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "held by another key", "only the holder can redeem")
	_, _, err = writ(t, cmd("grant", "redeem", token, "--creds", creds("deploy-bot"), "--resource", "staging/web")...)
	assert.Equal(t, exitUsage, exitCode(err))

	out, errOut, err = writ(t, cmd("grant", "redeem", token, "--creds", creds("deploy-bot"), "--action", "deploy", "--resource", "staging/web", "--param", "version=2")...)
	require.NoError(t, err, errOut)
	assert.Contains(t, out, "redeemed grant")
	assert.Contains(t, out, "deploy on acme/staging/web")
	assert.NotContains(t, out, token)

	_, _, err = writ(t, cmd("grant", "redeem", token, "--creds", creds("deploy-bot"), "--action", "deploy", "--resource", "staging/web", "--param", "version=2")...)
	require.Error(t, err)
	assert.Equal(t, exitNoGrant, exitCode(err))
	assert.Contains(t, err.Error(), "already used")

	// The audit trail shows the redemption and the refusals.
	id := strings.TrimSpace(func() string {
		out, _, err := writ(t, "grant", "verify", token, "--dir", dir)
		require.NoError(t, err)
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "request" {
				return f[1]
			}
		}
		return ""
	}())
	require.NotEmpty(t, id)
	out, _, err = writ(t, cmd("audit", "replay", "--request", id)...)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, strings.Count(out, "redeemed"), 5, out)
}
