package main

import (
	"path/filepath"
	"regexp"
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
	creds := func(name string) string { return filepath.Join(dir, "creds", name+".creds") }

	out, _, err := writ(t, cmd("state", "get", "acme/prod/db")...)
	require.NoError(t, err)
	assert.Equal(t, "acme/prod/db: {}\n", out, "no state is an empty object")

	// A change is an ask the pipeline decides: carol, a developer, may
	// not say who is on call for production; the refusal says why and
	// what to do.
	_, _, err = writ(t, cmd("state", "set", "acme/prod/db", "on_call=carol", "--creds", creds("carol"))...)
	require.Error(t, err)
	assert.Equal(t, 1, exitCode(err))
	assert.Contains(t, err.Error(), "refused")
	assert.Contains(t, err.Error(), "not authorized: acme/carol may not set the state of acme/prod/db")
	assert.Contains(t, err.Error(), `Action::"set-state" on Resource::"acme/prod/db"`)
	refused := regexp.MustCompile(`\(id ([0-9a-f-]{36}) in acme\)`).FindStringSubmatch(err.Error())
	require.NotNil(t, refused, err.Error())
	out, _, err = writ(t, cmd("audit", "export", "--domain", "acme", "--request", refused[1])...)
	require.NoError(t, err)
	assert.Contains(t, out, `"kind":"state"`)
	assert.Contains(t, out, `"kind":"refused"`, "the trail says it was refused")
	assert.Contains(t, out, `acme/carol may not set the state of acme/prod/db`, "and why")
	out, _, err = writ(t, cmd("state", "get", "acme/prod/db")...)
	require.NoError(t, err)
	assert.Equal(t, "acme/prod/db: {}\n", out, "refused: nothing changed")

	// Bob, an SRE lead, may; set returns once the bucket holds it.
	out, _, err = writ(t, cmd("state", "set", "acme/prod/db", "on_call=alice", "incident=INC-7", "--creds", creds("bob"), "--reason", "rotation")...)
	require.NoError(t, err)
	assert.Equal(t, "acme/prod/db: {\"incident\":\"INC-7\",\"on_call\":\"alice\"}\n", out)
	out, _, err = writ(t, cmd("state", "set", "acme/prod/db", "--merge", "runbook=https://x/y?a=b", "--creds", creds("bob"))...)
	require.NoError(t, err)
	assert.Equal(t, "acme/prod/db: {\"incident\":\"INC-7\",\"on_call\":\"alice\",\"runbook\":\"https://x/y?a=b\"}\n", out, "merge keeps the rest; a value may hold =")
	out, _, err = writ(t, cmd("state", "get", "acme/prod/db")...)
	require.NoError(t, err)
	assert.Contains(t, out, `"on_call":"alice"`)
	out, _, err = writ(t, cmd("state", "get", "acme/prod/db.x")...)
	require.NoError(t, err)
	assert.Equal(t, "acme/prod/db.x: {}\n", out, "a similar path has its own state")

	// The domain's own state, set by the bots (on-call tooling), and the
	// sample policy that reads both: the on-call SRE lead's restart is
	// granted at once during an incident.
	out, errOut, err := writ(t, cmd("state", "set", "acme", "incident_active=true", "--creds", creds("deploy-bot"))...)
	require.NoError(t, err)
	assert.Equal(t, "acme: {\"incident_active\":\"true\"}\n", out)
	recorded := regexp.MustCompile(`recorded in the trail as ([0-9a-f-]{36})`).FindStringSubmatch(errOut)
	require.NotNil(t, recorded, errOut)
	out, _, err = writ(t, cmd("audit", "export", "--domain", "acme", "--request", recorded[1])...)
	require.NoError(t, err)
	assert.Contains(t, out, `"kind":"stated"`, "the trail has the change, and who asked")
	assert.Contains(t, out, `"principal":"acme/deploy-bot"`)
	assert.NotContains(t, out, `"verified":false`)
	require.Eventually(t, func() bool {
		// Until the pipeline has heard of the state, the request is denied.
		out, errOut, err := writ(t, cmd("request", "--creds", creds("alice"), "--action", "restart", "--resource", "prod/db", "--wait")...)
		return err == nil && strings.Contains(errOut, "on-call-during-incident") && strings.Count(out, ".") == 2
	}, 10*time.Second, 100*time.Millisecond)

	// The trail has every change, and who asked.

	out, _, err = writ(t, cmd("state", "delete", "acme", "--creds", creds("deploy-bot"), "--reason", "INC-7 resolved")...)
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
		{"state", "set", "acme/prod/db", "k=v"}, // no --creds
		{"state", "set", "acme/prod/db", "k=" + strings.Repeat("v", 4097), "--creds", creds("bob")},
		{"state", "set", "acme/prod/db", "k=v", "--reason", " ", "--creds", creds("bob")},
		{"state", "delete", "acme/prod/db"}, // no --creds
		{"state", "get", "acme/prod/db", "extra"},
		{"state", "get", "acme/prod/db", "--reason", "x"},
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
