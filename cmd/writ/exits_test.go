package main

import (
	"context"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// grant show on a request still waiting for approvers exits 8 (no outcome
// yet), not 3 (denied); once approved, it prints the grant and exits 0.
func TestGrantShowPendingIsNotDenied(t *testing.T) {
	dir, url := serve(t)
	cmd := func(args ...string) []string { return append(args, "--dir", dir, "--server", url) }
	creds := func(name string) string { return filepath.Join(dir, "creds", name+".creds") }
	out, errOut, err := writ(t, cmd("request", "--creds", creds("carol"), "--action", "restart", "--resource", "prod/api")...)
	require.NoError(t, err, errOut)
	id := strings.TrimSpace(out)
	require.Eventually(t, func() bool {
		out, _, err := writ(t, cmd("approvals", "list", "--creds", creds("alice"))...)
		return err == nil && strings.Contains(out, id)
	}, 10*time.Second, 50*time.Millisecond, "the request waits for approvers")

	out, _, err = writ(t, cmd("grant", "show", id, "--creds", creds("carol"))...)
	require.Error(t, err)
	assert.Equal(t, exitUndecided, exitCode(err), "%v", err)
	assert.NotEqual(t, exitNoGrant, exitCode(err), "3 means denied")
	assert.Contains(t, err.Error(), "pending: no decision yet")
	assert.Empty(t, out, "no token")

	for _, who := range []string{"alice", "bob"} {
		_, errOut, err = writ(t, cmd("approve", id, "--creds", creds(who))...)
		require.NoError(t, err, errOut)
	}
	var token string
	require.Eventually(t, func() bool {
		out, _, err := writ(t, cmd("grant", "show", id, "--creds", creds("carol"))...)
		token = strings.TrimSpace(out)
		return err == nil
	}, 20*time.Second, 50*time.Millisecond)
	assert.NotEmpty(t, token)
}

// identity show of an identity the trust bundle refuses describes it and
// fails (exit 1), in text and as JSON; an accepted one exits 0.
func TestIdentityShowRefusedFails(t *testing.T) {
	root := t.TempDir()
	alpha, beta := initSetup(t, root, "alpha"), initSetup(t, root, "beta")
	path := filepath.Join(alpha, "creds", "carol.creds")

	_, _, err := writ(t, "identity", "show", "--creds", path, "--dir", alpha)
	require.NoError(t, err, "accepted by its own domain's bundle")
	for _, args := range [][]string{{}, {"--json"}} {
		out, _, err := writ(t, append([]string{"identity", "show", "--creds", path, "--dir", beta}, args...)...)
		require.Error(t, err, "beta does not trust alpha")
		assert.Equal(t, 1, exitCode(err))
		assert.Contains(t, err.Error(), "refuses this identity")
		assert.Contains(t, out, "refused by", "still described")
		assert.Contains(t, out, "carol")
	}
}

// A request approved after its requester was locked ends: the issuer's
// refusal is its terminal event, 'request --wait' returns as soon as it is
// recorded with exit 5 (rejected or refused) and says why, instead of
// waiting out its timeout; 'audit verify --strict' passes on the history.
func TestLockedAfterApprovalEnds(t *testing.T) {
	dir, url := serve(t)
	cmd := func(args ...string) []string { return append(args, "--dir", dir, "--server", url) }
	creds := func(name string) string { return filepath.Join(dir, "creds", name+".creds") }

	const timeout = 25 * time.Second
	var stderr syncBuffer
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout+10*time.Second)
		defer cancel()
		done <- run(ctx, cmd("request", "--creds", creds("carol"), "--action", "restart", "--resource", "prod/db",
			"--wait", "--timeout", timeout.String()), io.Discard, &stderr)
	}()
	var id string
	re := regexp.MustCompile(`request ([0-9a-f-]{36}):`)
	require.Eventually(t, func() bool {
		m := re.FindStringSubmatch(stderr.String())
		if m != nil {
			id = m[1]
		}
		return m != nil && strings.Contains(stderr.String(), "waiting for")
	}, 10*time.Second, 20*time.Millisecond, stderr.String())

	_, errOut, err := writ(t, cmd("lock", "principal", "acme/carol", "--creds", creds("bob"), "--reason", "laptop stolen")...)
	require.NoError(t, err, errOut)
	for _, who := range []string{"alice", "bob"} {
		_, errOut, err := writ(t, cmd("approve", id, "--creds", creds(who))...)
		require.NoError(t, err, errOut)
	}

	var werr error
	select {
	case werr = <-done:
	case <-time.After(timeout + 15*time.Second):
		t.Fatal("request --wait did not return")
	}
	require.Error(t, werr, stderr.String())
	assert.Equal(t, exitRejected, exitCode(werr), "%v", werr)
	assert.Less(t, time.Since(start), timeout, "it ended with the refusal, not at its timeout")
	assert.Contains(t, werr.Error(), "request "+id+" refused")
	assert.Contains(t, werr.Error(), "the issuer refused its grant (locked)")

	out, _, err := writ(t, cmd("request", "show", id)...)
	require.NoError(t, err)
	assert.Contains(t, out, "REFUSED")

	out, errOut, err = writ(t, cmd("audit", "verify", "--strict")...)
	require.NoError(t, err, "%s\n%s", out, errOut)
}
