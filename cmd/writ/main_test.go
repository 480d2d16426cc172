package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader in two goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// serve starts `writ serve` on a fresh directory and a free port, and
// returns the directory and the server URL. The server stops at cleanup,
// and must stop cleanly.
func serve(t *testing.T) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "writ")
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
			assert.Contains(t, out.String(), "Stopping: consumers drained.")
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
	re := regexp.MustCompile(`listening on (nats://[0-9.:]+)`)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(out.String(), "Ctrl-C stops") {
			m := re.FindStringSubmatch(out.String())
			require.NotNil(t, m, out.String())
			require.Contains(t, out.String(), "created a development setup")
			return dir, m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended early: %v\n%s\n%s", err, out.String(), errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not start: %s %s", out.String(), errOut.String())
	return "", ""
}

// writ runs one command and returns its stdout, stderr and error.
func writ(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestWalkthrough(t *testing.T) {
	dir, url := serve(t)
	creds := func(name string) string { return filepath.Join(dir, "creds", name+".creds") }
	common := []string{"--dir", dir, "--server", url}
	cmd := func(args ...string) []string { return append(args, common...) }

	// Auto-approve: the token alone on stdout, and it verifies.
	out, errOut, err := writ(t, cmd("request", "--creds", creds("deploy-bot"), "--action", "deploy", "--resource", "staging/web", "--wait")...)
	require.NoError(t, err, errOut)
	token := strings.TrimSpace(out)
	require.Regexp(t, `^[\w-]+\.[\w-]+\.[\w-]+$`, token)
	assert.Contains(t, errOut, "granted (bots-deploy-staging)")
	out, _, err = writ(t, "grant", "verify", token, "--dir", dir, "--action", "deploy", "--resource", "staging/web")
	require.NoError(t, err)
	assert.Contains(t, out, "valid grant")
	_, _, err = writ(t, "grant", "verify", token, "--dir", dir, "--action", "restart")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the grant is for another action")

	// Deny by policy: exit status 3 and the determining policy.
	_, _, err = writ(t, cmd("request", "--creds", creds("carol"), "--action", "drop-database", "--resource", "prod/db", "--wait")...)
	require.Error(t, err)
	assert.Equal(t, exitNoGrant, exitCode(err))
	assert.Contains(t, err.Error(), "no-prod-database-drop")

	// Two approvers.
	out, _, err = writ(t, cmd("request", "--creds", creds("carol"), "--action", "restart", "--resource", "prod/db", "--reason", "replication stuck")...)
	require.NoError(t, err)
	id := strings.TrimSpace(out)
	require.Eventually(t, func() bool {
		out, _, err := writ(t, cmd("approvals", "watch", "--once", "--creds", creds("alice"))...)
		return err == nil && strings.Contains(out, id) && strings.Contains(out, `reason="replication stuck"`)
	}, 10*time.Second, 50*time.Millisecond)
	_, _, err = writ(t, cmd("approve", id, "--creds", creds("carol"))...)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "own request")
	out, _, err = writ(t, cmd("approve", id, "--creds", creds("alice"))...)
	require.NoError(t, err)
	assert.Contains(t, out, "1 of 2")
	out, _, err = writ(t, cmd("approve", id, "--creds", creds("bob"))...)
	require.NoError(t, err)
	assert.Regexp(t, "now (approved|granted)", out)
	out, _, err = writ(t, cmd("grant", "show", id, "--creds", creds("carol"))...)
	require.NoError(t, err)
	assert.Regexp(t, `^[\w-]+\.[\w-]+\.[\w-]+\n$`, out)
	_, _, err = writ(t, cmd("grant", "show", id, "--creds", creds("alice"))...)
	assert.Error(t, err, "only the requester opens the grant")

	// Deny by an approver.
	out, _, err = writ(t, cmd("request", "--creds", creds("carol"), "--action", "restart", "--resource", "prod/api")...)
	require.NoError(t, err)
	id2 := strings.TrimSpace(out)
	require.Eventually(t, func() bool {
		out, _, _ := writ(t, cmd("approvals", "watch", "--once", "--creds", creds("bob"))...)
		return strings.Contains(out, id2)
	}, 10*time.Second, 50*time.Millisecond)
	_, _, err = writ(t, cmd("deny", id2, "--creds", creds("bob"))...)
	assert.Equal(t, exitUsage, exitCode(err), "deny needs a reason")
	out, _, err = writ(t, cmd("deny", id2, "--creds", creds("bob"), "--reason", "release freeze")...)
	require.NoError(t, err)
	assert.Contains(t, out, "now denied")

	// The audit trail, as text and as JSON lines.
	out, _, err = writ(t, cmd("audit", "replay", "--request", id)...)
	require.NoError(t, err)
	for _, k := range []string{"requested", "evaluated", "voted", "approved", "granted"} {
		assert.Contains(t, out, k)
	}
	out, _, err = writ(t, cmd("audit", "replay", "--json")...)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	// deploy 3, drop 2, restart 7 (two votes, the first counted), denied
	// restart 4; carol's own vote was refused by the command before
	// anything was published.
	assert.Len(t, lines, 3+2+7+4)
	for _, l := range lines {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &rec), l)
		assert.Equal(t, true, rec["valid"], l)
	}
}

func TestCommandLineErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, exitUsage, "no command"},
		{"unknown command", []string{"frobnicate"}, exitUsage, "unknown command"},
		{"request without creds", []string{"request", "--action", "a", "--resource", "r"}, exitUsage, "--creds is required"},
		{"request without action", []string{"request", "--creds", "x.creds"}, exitUsage, "--action and --resource"},
		{"bad urgency", []string{"request", "--action", "a", "--resource", "r", "--urgency", "asap"}, exitUsage, "--urgency"},
		{"bad flag", []string{"serve", "--no-such-flag"}, exitUsage, "no-such-flag"},
		{"approve needs an id", []string{"approve", "--creds", "x"}, exitUsage, "one request id"},
		{"audit needs a subcommand", []string{"audit"}, exitUsage, "writ audit <replay|verify|checkpoint|export|deadletter>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, err := writ(t, tc.args...)
			require.Error(t, err)
			assert.Equal(t, tc.code, exitCode(err))
			assert.Contains(t, err.Error()+errOut, tc.want)
		})
	}
}

func TestServeRefusesATakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	_, _, err = writ(t, "serve", "--dir", filepath.Join(t.TempDir(), "w"), "--listen", l.Addr().String())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "address already in use")
	assert.Contains(t, err.Error(), "--port")
}

func TestClientCommandsSayWhenNoServerRuns(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "w")
	_, _, err := writ(t, "init", "--dir", dir)
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close() // a port nothing listens on
	_, _, err = writ(t, "request", "--dir", dir, "--server", "nats://"+addr, "--creds", filepath.Join(dir, "creds", "carol.creds"),
		"--action", "restart", "--resource", "prod/db")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is 'writ serve' running?")
}

// `serve --server` joins an existing NATS instead of embedding one.
// A real nats-server configured by 'writ init --server-config' serves the
// pipeline with the components' creds, admits the domain's principals, and
// refuses a connection without credentials; serve warns when its creds
// could rewrite the audit stream.
func TestServeOnAnExistingServer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "w")
	conf := filepath.Join(t.TempDir(), "nats.conf")
	_, _, err := writ(t, "init", "--dir", dir, "--domain", "globex", "--server-config", conf, "--store-dir", filepath.Join(t.TempDir(), "js"))
	require.NoError(t, err)
	opts, err := server.ProcessConfigFile(conf)
	require.NoError(t, err)
	opts.Port, opts.NoSigs, opts.NoLog = -1, true, true
	ns, err := server.NewServer(opts)
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	defer ns.Shutdown()
	url := ns.ClientURL()
	_, err = nats.Connect(url)
	require.ErrorIs(t, err, nats.ErrAuthorization, "a connection without credentials is refused")

	for _, c := range []struct {
		creds string
		warns bool
	}{{"", false}, {filepath.Join(dir, "keys", "operator.creds"), true}} {
		ctx, cancel := context.WithCancel(context.Background())
		var out, errOut syncBuffer
		done := make(chan error, 1)
		args := []string{"serve", "--dir", dir, "--server", url, "--log-level", "warn"}
		if c.creds != "" {
			args = append(args, "--creds", c.creds)
		}
		go func() { done <- run(ctx, args, &out, &errOut) }()
		require.Eventually(t, func() bool { return strings.Contains(out.String(), "Ctrl-C stops") }, 15*time.Second, 20*time.Millisecond, errOut.String())
		assert.Contains(t, out.String(), "Using NATS at "+url)
		if c.warns {
			assert.Contains(t, errOut.String(), "may rewrite or remove the audit stream", "serve warns about the operator's creds")
		} else {
			assert.NotContains(t, errOut.String(), "rewrite", "the components' creds rewrite nothing")
		}

		stdout, errText, err := writ(t, "request", "--dir", dir, "--server", url, "--creds", filepath.Join(dir, "creds", "deploy-bot.creds"),
			"--action", "deploy", "--resource", "staging/api", "--wait")
		require.NoError(t, err, errText)
		assert.NotEmpty(t, strings.TrimSpace(stdout))
		cancel()
		require.NoError(t, <-done)
	}
}

// A second serve on a running setup's directory is refused, whatever port
// it is given, and the refusal names the running one; the first keeps
// serving.
func TestSecondServeOnOneDirectoryRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "w")
	_, _, err := writ(t, "init", "--dir", dir)
	require.NoError(t, err)
	opsURL, natsURL, _ := serveOps(t, dir, "--port", "-1")

	_, _, err = writ(t, "serve", "--dir", dir, "--port", "-1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "another 'writ serve' is running on "+dir)
	assert.Contains(t, err.Error(), fmt.Sprintf("process %d", os.Getpid()))
	assert.Contains(t, err.Error(), natsURL, "it says where the running one listens")
	assert.NotContains(t, err.Error(), "pick another with --port")
	awaitStatus(t, opsURL+"/readyz", http.StatusOK) // the first serve is unharmed
}

// An id that is not one is refused in the user's words, saying where
// to find the right one.
func TestApproveRefusesSomethingThatIsNotAnID(t *testing.T) {
	dir, url := serve(t)
	_, _, err := writ(t, "approve", "not-an-id", "--dir", dir, "--server", url, "--creds", filepath.Join(dir, "creds", "alice.creds"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"not-an-id" is not a request id; copy the id from 'writ approvals list'`)
	assert.NotContains(t, err.Error(), "client:")
}
