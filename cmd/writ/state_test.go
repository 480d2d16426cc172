package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStateCommand(t *testing.T) {
	dir, url := serve(t)
	common := []string{"--dir", dir, "--server", url}
	cmd := func(args ...string) []string { return append(args, common...) }

	out, _, err := writ(t, cmd("state", "get", "acme/prod/db")...)
	require.NoError(t, err)
	assert.Equal(t, "acme/prod/db: {}\n", out, "no state is an empty object")

	out, _, err = writ(t, cmd("state", "set", "acme/prod/db", "on_call=alice", "incident=INC-7")...)
	require.NoError(t, err)
	assert.Equal(t, "acme/prod/db: {\"incident\":\"INC-7\",\"on_call\":\"alice\"}\n", out)
	out, _, err = writ(t, cmd("state", "set", "acme/prod/db", "--merge", "runbook=https://x/y?a=b")...)
	require.NoError(t, err)
	assert.Equal(t, "acme/prod/db: {\"incident\":\"INC-7\",\"on_call\":\"alice\",\"runbook\":\"https://x/y?a=b\"}\n", out, "merge keeps the rest; a value may hold =")
	out, _, err = writ(t, cmd("state", "get", "acme/prod/db")...)
	require.NoError(t, err)
	assert.Contains(t, out, `"on_call":"alice"`)
	out, _, err = writ(t, cmd("state", "get", "acme/prod/db.x")...)
	require.NoError(t, err)
	assert.Equal(t, "acme/prod/db.x: {}\n", out, "a similar path has its own state")

	// The domain's own state, and the sample policy that reads both: the
	// on-call SRE lead's restart is granted at once during an incident.
	out, _, err = writ(t, cmd("state", "set", "acme", "incident_active=true")...)
	require.NoError(t, err)
	assert.Equal(t, "acme: {\"incident_active\":\"true\"}\n", out)
	creds := filepath.Join(dir, "creds", "alice.creds")
	require.Eventually(t, func() bool {
		// Until the pipeline has heard of the state, the request is denied.
		out, errOut, err := writ(t, cmd("request", "--creds", creds, "--action", "restart", "--resource", "prod/db", "--wait")...)
		return err == nil && strings.Contains(errOut, "on-call-during-incident") && strings.Count(out, ".") == 2
	}, 10*time.Second, 100*time.Millisecond)

	out, _, err = writ(t, cmd("state", "delete", "acme")...)
	require.NoError(t, err)
	assert.Equal(t, "acme: no state\n", out)
	out, _, err = writ(t, cmd("state", "get", "acme")...)
	require.NoError(t, err)
	assert.Equal(t, "acme: {}\n", out)

	for _, bad := range [][]string{
		{"state"},
		{"state", "get"},
		{"state", "set", "acme/prod/db"},
		{"state", "set", "acme/prod/db", "novalue"},
		{"state", "set", "acme/prod/db", "=x"},
		{"state", "get", "acme/prod/db", "extra"},
		{"state", "delete", "acme/", "--merge"},
		{"state", "get", "acme/"},
		{"state", "get", "Acme/prod"},
		{"state", "get", "acme/prod//db"},
		{"state", "frob", "acme/prod"},
	} {
		_, _, err := writ(t, cmd(bad...)...)
		assert.Equal(t, exitUsage, exitCode(err), "%v: %v", bad, err)
	}
}
