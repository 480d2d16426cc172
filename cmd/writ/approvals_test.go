package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/access"
)

// twoStageFlows replaces the sample flow with two stages of one SRE lead
// each: alice answers the first, bob the second (an approver counts once).
const twoStageFlows = `{"flows": {"two-sre-leads": {"stages": [
  {"name": "lead", "groups": ["sre-leads"], "required": 1, "deadline": "30m"},
  {"name": "second-lead", "groups": ["sre-leads"], "required": 1, "deadline": "30m"}
]}}}`

// serveWith creates a setup with 'writ init', writes flows.json, and runs
// 'writ serve' on it on a free port until cleanup. It returns the
// directory and the server URL.
func serveWith(t *testing.T, flows string) (string, string) {
	t.Helper()
	return serveFiles(t, map[string]string{"flows.json": flows}, "")
}

// serveFiles is serveWith for any files of the setup (by path within it),
// and policies added to the sample's main.cedar.
func serveFiles(t *testing.T, files map[string]string, morePolicies string) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "writ")
	_, _, err := writ(t, "init", "--dir", dir)
	require.NoError(t, err)
	for name, text := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600))
	}
	if morePolicies != "" {
		path := filepath.Join(dir, "policies", "main.cedar")
		sample, err := os.ReadFile(path)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, append(sample, morePolicies...), 0o600))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--dir", dir, "--port", "-1", "--log-level", "warn"}, &out, &errOut)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, "serve should stop cleanly; stderr: %s", errOut.String())
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
	re := regexp.MustCompile(`listening on (nats://[0-9.:]+)`)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "Ctrl-C stops") }, 15*time.Second, 20*time.Millisecond,
		"serve did not start: %s %s", out.String(), errOut.String())
	m := re.FindStringSubmatch(out.String())
	require.NotNil(t, m, out.String())
	return dir, m[1]
}

func TestApprovalsWatchLineModeVotes(t *testing.T) {
	dir, url := serveWith(t, twoStageFlows)
	creds := func(name string) string { return filepath.Join(dir, "creds", name+".creds") }
	cmd := func(args ...string) []string { return append(args, "--dir", dir, "--server", url) }

	// alice watches, in line mode, with commands on stdin.
	typeIn, out, errOut := lineWatch(t, cmd("watch", "--creds", creds("alice")), "Watching for requests")

	stdout, _, err := writ(t, cmd("request", "--creds", creds("carol"), "--action", "restart", "--resource", "prod/db",
		"--reason", "replication stuck", "--param", "replica=2")...)
	require.NoError(t, err)
	id := strings.TrimSpace(stdout)

	// The pending request appears with its facts.
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "PENDING  "+id) }, 10*time.Second, 20*time.Millisecond, out.String())
	pending := lineWith(out.String(), "PENDING  "+id)
	for _, want := range []string{"acme/carol (origin acme) wants restart on acme/prod/db", "urgency=normal",
		"two-sre-leads: stage 1/2 'lead', 0 of 1 from sre-leads", "approved by: nobody yet", `reason="replication stuck"`, "params=replica=\"2\"", "digest=sha256:"} {
		assert.Contains(t, pending, want)
	}

	// A command that cannot be carried out says why, and the watch goes on.
	_, err = fmt.Fprintf(typeIn, "deny %s\n", id)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(errOut.String(), "deny needs a reason") }, 5*time.Second, 20*time.Millisecond)

	// alice approves from the watch; the request moves to its second stage,
	// which is no longer hers to answer.
	_, err = fmt.Fprintf(typeIn, "approve %s fine by me\n", id)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "RESULT   approved "+id) }, 10*time.Second, 20*time.Millisecond, out.String()+errOut.String())
	assert.Contains(t, lineWith(out.String(), "RESULT   approved "+id), "still pending: two-sre-leads: stage 2/2 'second-lead', 0 of 1")
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "ANSWERED "+id) }, 10*time.Second, 20*time.Millisecond, out.String())

	// bob sees the same facts, with alice's approval, as JSON.
	stdout, _, err = writ(t, cmd("approvals", "list", "--json", "--creds", creds("bob"))...)
	require.NoError(t, err)
	var list []map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &list), stdout)
	require.Len(t, list, 1)
	got := list[0]
	assert.Equal(t, id, got["request_id"])
	assert.Equal(t, "pending", got["status"])
	assert.Equal(t, "acme/carol", got["requester"])
	assert.Equal(t, "acme", got["origin_domain"])
	assert.Regexp(t, `^sha256:`, got["request_digest"])
	assert.NotEmpty(t, got["deadline"])
	assert.Equal(t, map[string]any{
		"requester": "acme/carol", "action": "restart", "resource": "prod/db",
		"params": map[string]any{"replica": "2"}, "reason": "replication stuck", "urgency": "normal",
	}, got["requested"])
	flows := got["flows"].([]any)
	require.Len(t, flows, 1)
	flow := flows[0].(map[string]any)
	assert.Equal(t, "two-sre-leads", flow["name"])
	assert.EqualValues(t, 2, flow["stage"])
	stages := flow["stages"].([]any)
	require.Len(t, stages, 2)
	assert.Equal(t, "done", stages[0].(map[string]any)["state"])
	assert.Equal(t, []any{"acme/alice"}, stages[0].(map[string]any)["approvals"])
	assert.Equal(t, "open", stages[1].(map[string]any)["state"])
	assert.NotEmpty(t, stages[1].(map[string]any)["deadline"])
	votes := got["votes"].([]any)
	require.Len(t, votes, 1)
	assert.Equal(t, "acme/alice", votes[0].(map[string]any)["voter"])
	assert.Equal(t, "approve", votes[0].(map[string]any)["decision"])
	assert.Equal(t, "fine by me", votes[0].(map[string]any)["reason"])

	stdout, _, err = writ(t, cmd("approvals", "list", "--creds", creds("bob"))...)
	require.NoError(t, err)
	assert.Contains(t, stdout, "PENDING "+id)
	assert.Contains(t, stdout, "approved by: acme/alice")

	// bob approves; alice's watch sees the request end.
	_, _, err = writ(t, cmd("approve", id, "--creds", creds("bob"))...)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		stdout, _, err := writ(t, cmd("request", "show", id, "--json")...)
		return err == nil && strings.Contains(stdout, `"status": "granted"`)
	}, 10*time.Second, 50*time.Millisecond)

	stdout, _, err = writ(t, cmd("request", "show", id, "--json")...)
	require.NoError(t, err)
	var show map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &show), stdout)
	assert.Equal(t, "granted", show["status"])
	assert.Equal(t, pendingDigest(pending), show["request_digest"], "the digest alice was shown is the one on record")
	grant := show["grant"].(map[string]any)
	assert.Regexp(t, `^sha256:`, grant["token_hash"])
	assert.NotEmpty(t, grant["expires_at"])
	assert.Len(t, show["votes"], 2)
	assert.Equal(t, []any{"developers-restart-prod"}, show["evaluation"].(map[string]any)["reasons"])

	stdout, _, err = writ(t, cmd("request", "show", id)...)
	require.NoError(t, err)
	for _, want := range []string{"GRANTED", "1. lead", "2. second-lead", "approved by acme/alice", "approved by acme/bob", "vote #", "grant:", "digest:"} {
		assert.Contains(t, stdout, want)
	}
	_, _, err = writ(t, cmd("request", "show")...)
	assert.Equal(t, exitUsage, exitCode(err))
}

func lineWith(text, sub string) string {
	for l := range strings.SplitSeq(text, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

func pendingDigest(line string) string {
	_, d, _ := strings.Cut(line, "digest=")
	return d
}

func TestRequestWaitExitCodes(t *testing.T) {
	// The sample flow with a two-second deadline, so that one expires.
	dir, url := serveWith(t, strings.Replace(twoStageFlows, `"deadline": "30m"`, `"deadline": "2s"`, 1))
	creds := func(name string) string { return filepath.Join(dir, "creds", name+".creds") }
	cmd := func(args ...string) []string { return append(args, "--dir", dir, "--server", url) }

	// A stranger: an identity claiming a domain this setup does not trust.
	// (Another domain's own identities are refused by the server before
	// they could ask; this one the server admits, signed by acme's
	// account, and the pipeline rejects.)
	stranger := filepath.Join(t.TempDir(), "stranger.creds")
	cfg, err := config.Load(dir)
	require.NoError(t, err)
	account, err := identity.LoadSeed(cfg.Path(config.AccountSeed))
	require.NoError(t, err)
	cfg.Domain = "globex"
	b, err := cfg.IssueRole(account, config.RoleSpec{Roles: []access.Role{access.Principal}, Name: "carol", Groups: []string{"developers"}})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(stranger, b, 0o600))

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr []string
	}{
		{"granted", []string{"--creds", creds("deploy-bot"), "--action", "deploy", "--resource", "staging/web"}, 0,
			[]string{"evaluated: allow by bots-deploy-staging", "granted (bots-deploy-staging)"}},
		{"denied by policy", []string{"--creds", creds("carol"), "--action", "drop-database", "--resource", "prod/db"}, 3,
			[]string{"evaluated: deny by no-prod-database-drop"}},
		{"expired", []string{"--creds", creds("carol"), "--action", "restart", "--resource", "prod/db"}, 4,
			[]string{"evaluated: review by developers-restart-prod", "waiting for two-sre-leads: stage 1/2 'lead', 0 of 1", "deadline:", "now expired"}},
		{"rejected", []string{"--creds", stranger, "--domain", "acme", "--action", "restart", "--resource", "prod/db"}, 5,
			[]string{"rejected:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, err := writ(t, cmd(append([]string{"request", "--wait"}, tc.args...)...)...)
			code := 0
			if err != nil {
				code = exitCode(err)
			}
			assert.Equal(t, tc.code, code, "%v\n%s", err, errOut)
			for _, want := range tc.stderr {
				assert.Contains(t, errOut, want)
			}
		})
	}
}

func TestRequestWaitShowsVotes(t *testing.T) {
	dir, url := serveWith(t, twoStageFlows)
	creds := func(name string) string { return filepath.Join(dir, "creds", name+".creds") }
	cmd := func(args ...string) []string { return append(args, "--dir", dir, "--server", url) }

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, cmd("request", "--wait", "--creds", creds("carol"), "--action", "restart", "--resource", "prod/api"), &out, &errOut)
	}()
	re := regexp.MustCompile(`request ([0-9a-f-]{36}):`)
	require.Eventually(t, func() bool { return strings.Contains(errOut.String(), "deadline:") }, 10*time.Second, 20*time.Millisecond, errOut.String())
	id := re.FindStringSubmatch(errOut.String())[1]
	_, _, err := writ(t, cmd("approve", id, "--creds", creds("alice"))...)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(errOut.String(), "stage opened: two-sre-leads: stage 2/2") }, 10*time.Second, 20*time.Millisecond, errOut.String())
	_, _, err = writ(t, cmd("deny", id, "--creds", creds("bob"), "--reason", "release freeze")...)
	require.NoError(t, err)
	err = <-done
	assert.Equal(t, exitDenied, exitCode(err), "%v", err)
	text := errOut.String()
	for _, want := range []string{"vote: acme/alice approves", `vote: acme/bob denies: "release freeze"`, "now denied: denied by acme/bob: release freeze"} {
		assert.Contains(t, text, want)
	}
}

// breakGlassPolicy lets a developer restart in production at once, for a
// critical incident with a ticket, reviewed after the fact by the sample
// flow (two SRE leads; one denial denies).
const breakGlassPolicy = `
@id("critical-break-glass")
@break_glass("true")
@flow("two-sre-leads")
@max_ttl("10m")
permit (principal in Group::"acme/developers", action == Action::"restart", resource)
when { context.urgency == "critical" && context.ticket like "INC-*" };
`

// An open break-glass review is listed by 'approvals list' (text and JSON)
// and 'approvals watch --once' to those who may answer it, with the time
// left, and is answered from the watch like a pending request: a deny
// settles it, and the grant is revoked.
func TestApprovalsListAndWatchShowReviews(t *testing.T) {
	oneStage := `{"flows": {"two-sre-leads": {"stages": [{"name": "review", "groups": ["sre-leads"], "required": 2, "deadline": "1h"}]}}}`
	dir, url := serveFiles(t, map[string]string{"flows.json": oneStage}, breakGlassPolicy)
	creds := func(name string) string { return filepath.Join(dir, "creds", name+".creds") }
	cmd := func(args ...string) []string { return append(args, "--dir", dir, "--server", url) }

	_, errOut, err := writ(t, cmd("request", "--creds", creds("carol"), "--action", "restart", "--resource", "prod/db",
		"--urgency", "critical", "--ticket", "INC-9", "--reason", "db down", "--wait")...)
	require.NoError(t, err, errOut)
	require.Contains(t, errOut, "BREAK-GLASS")
	id := regexp.MustCompile(`request ([0-9a-f-]{36}):`).FindStringSubmatch(errOut)[1]

	// Listed to alice, with the time left (nobody's vote is in yet).
	var out string
	require.Eventually(t, func() bool {
		out, _, err = writ(t, cmd("approvals", "list", "--creds", creds("alice"))...)
		return err == nil && strings.Contains(out, "REVIEW "+id)
	}, 10*time.Second, 50*time.Millisecond, "the break-glass alert is on record: %s", out)
	assert.Contains(t, out, "break-glass, granted at once; answer it after the fact")
	assert.Regexp(t, `review by:\s+\S+ \(in (59m\d+s|1h0m0s)\)`, out)
	assert.Contains(t, out, "the after-the-fact review is open")
	assert.Contains(t, out, `"db down"`)

	out, _, err = writ(t, cmd("approvals", "list", "--json", "--creds", creds("bob"))...)
	require.NoError(t, err)
	var list []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &list), out)
	require.Len(t, list, 1)
	assert.Equal(t, "granted", list[0]["status"])
	review := list[0]["review"].(map[string]any)
	assert.Equal(t, "open", review["state"])
	assert.NotEmpty(t, review["deadline"])
	assert.NotEmpty(t, list[0]["deadline"])

	out, _, err = writ(t, cmd("approvals", "watch", "--once", "--creds", creds("alice"))...)
	require.NoError(t, err)
	line := lineWith(out, "REVIEW   "+id)
	require.NotEmpty(t, line, out)
	assert.Contains(t, line, "acme/carol (origin acme) used break-glass for restart on acme/prod/db (granted)")
	assert.Regexp(t, `review due in (59m\d+s|1h0m0s)`, line)

	out, _, err = writ(t, cmd("approvals", "list", "--creds", creds("carol"))...)
	require.NoError(t, err)
	assert.NotContains(t, out, id, "not to the requester")

	// alice denies it from the watch: the review settles, the grant goes.
	typeIn, wout, werr := lineWatch(t, cmd("watch", "--creds", creds("alice")), "Watching for requests")
	_, err = fmt.Fprintf(typeIn, "deny %s there was no incident\n", id)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(wout.String(), "RESULT   denied "+id) }, 10*time.Second, 20*time.Millisecond, wout.String()+werr.String())
	assert.Contains(t, lineWith(wout.String(), "RESULT   denied "+id), `the break-glass review is denied by acme/alice "there was no incident"`)
	require.Eventually(t, func() bool {
		out, _, err = writ(t, cmd("request", "show", id)...)
		return err == nil && strings.Contains(out, "REVOKED") && strings.Contains(out, "REVIEW-DENIED")
	}, 10*time.Second, 50*time.Millisecond, out)
	assert.Contains(t, out, `denied by acme/alice "there was no incident"; the grant is revoked`)

	out, _, err = writ(t, cmd("approvals", "list", "--creds", creds("bob"))...)
	require.NoError(t, err)
	assert.NotContains(t, out, id, "settled: nobody's to answer")
}

// lineWatch runs 'writ approvals watch' in line mode with args, commands
// typed into the writer it returns, until the test ends; it returns once
// the watch has said ready (its first line holds ready).
func lineWatch(t *testing.T, args []string, ready string) (io.Writer, *syncBuffer, *syncBuffer) {
	t.Helper()
	stdin, typeIn := io.Pipe()
	out, errOut := new(syncBuffer), new(syncBuffer)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- approvals(ctx, args, stdin, out, errOut) }()
	t.Cleanup(func() {
		cancel()
		typeIn.Close()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("watch did not stop")
		}
	})
	require.Eventually(t, func() bool { return strings.Contains(out.String(), ready) }, 10*time.Second, 20*time.Millisecond, "%s %s", out.String(), errOut.String())
	return typeIn, out, errOut
}
