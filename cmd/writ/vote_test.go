package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// formerVoteWait is how long writ approve used to wait for a refusal after
// every vote, and so what a vote that decides nothing took at least.
const formerVoteWait = 1500 * time.Millisecond

// A vote that decides nothing returns once the pipeline has counted it:
// before the former fixed wait could have run out.
func TestVoteReturnsOnItsAnswer(t *testing.T) {
	dir, url := serve(t)
	creds := func(name string) string { return filepath.Join(dir, "creds", name+".creds") }
	cmd := func(args ...string) []string { return append(args, "--dir", dir, "--server", url) }
	out, _, err := writ(t, cmd("request", "--creds", creds("carol"), "--action", "restart", "--resource", "prod/db")...)
	require.NoError(t, err)
	id := strings.TrimSpace(out)
	require.Eventually(t, func() bool {
		out, _, err := writ(t, cmd("approvals", "watch", "--once", "--creds", creds("alice"))...)
		return err == nil && strings.Contains(out, id)
	}, 10*time.Second, 20*time.Millisecond)

	for _, tc := range []struct{ who, verb, want string }{
		{"alice", "approve", "approved " + id + " in acme; still pending: two-sre-leads: stage 1/1 'leads', 1 of 2"},
		{"bob", "approve", "the request is now"},
	} {
		start := time.Now()
		out, errOut, err := writ(t, cmd(tc.verb, id, "--creds", creds(tc.who))...)
		took := time.Since(start)
		require.NoError(t, err, errOut)
		assert.Contains(t, out, tc.want)
		assert.Less(t, took, formerVoteWait, "%s's vote took %s", tc.who, took)
		t.Logf("%s's vote returned in %s", tc.who, took.Round(time.Millisecond))
	}
	out, _, err = writ(t, cmd("audit", "replay", "--request", id)...)
	require.NoError(t, err)
	assert.Contains(t, out, "counted; the flows wait for others", "the answer the first vote waited for")
}
