package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/internal/embedded"
)

// serveOps starts `writ serve` with the operations endpoints on a free
// loopback port and args added, and returns the endpoints' base URL, the
// NATS URL and serve's standard error. It stops at cleanup.
func serveOps(t *testing.T, dir string, args ...string) (string, string, *syncBuffer) {
	t.Helper()
	base, nats, stderr, _ := serveOpsUntil(t, dir, args...)
	return base, nats, stderr
}

// serveOpsUntil is serveOps, and a stop that stops serve before cleanup
// (cleanup then has nothing left to stop).
func serveOpsUntil(t *testing.T, dir string, args ...string) (string, string, *syncBuffer, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--dir", dir, "--http", "127.0.0.1:0"}, args...), &out, &errOut)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				assert.NoError(t, err, "serve should stop cleanly; stderr: %s", errOut.String())
			case <-time.After(30 * time.Second):
				t.Error("serve did not stop")
			}
		})
	}
	t.Cleanup(stop)
	opsURL := regexp.MustCompile(`Operations endpoints on (http://[0-9.:]+) `)
	natsURL := regexp.MustCompile(`(?:listening on|Using NATS at) (nats://[0-9.:]+)`)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		if s := out.String(); strings.Contains(s, "Ctrl-C stops") {
			o, n := opsURL.FindStringSubmatch(s), natsURL.FindStringSubmatch(s)
			require.NotNil(t, o, s)
			require.NotNil(t, n, s)
			return o[1], n[1], &errOut, stop
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended early: %v\n%s\n%s", err, out.String(), errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not start: %s %s", out.String(), errOut.String())
	return "", "", nil, nil
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// awaitStatus polls url until it answers code.
func awaitStatus(t *testing.T, url string, code int) string {
	t.Helper()
	var body string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var c int
		if c, body = httpGet(t, url); c == code {
			return body
		}
	}
	t.Fatalf("%s never answered %d; last: %s", url, code, body)
	return ""
}

func TestServeOperationsEndpoints(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "writ")
	base, nats, stderr := serveOps(t, dir, "--port", "-1", "--log-format", "json")

	// The components start running just after serve says it serves.
	body := awaitStatus(t, base+"/healthz", http.StatusOK)
	assert.Contains(t, body, `"policy":"running"`)
	awaitStatus(t, base+"/readyz", http.StatusOK)

	_, errOut, err := writ(t, "request", "--dir", dir, "--server", nats, "--creds", filepath.Join(dir, "creds", "deploy-bot.creds"),
		"--action", "deploy", "--resource", "staging/web", "--wait")
	require.NoError(t, err, errOut)
	// The requester may hear of the grant before the issuer, on a
	// connection of its own, has counted its append.
	var code int
	require.Eventually(t, func() bool {
		code, body = httpGet(t, base+"/metrics")
		return strings.Contains(body, `writ_events_appended_total{component="issuer",kind="granted"} 1`)
	}, 5*time.Second, 20*time.Millisecond, "the issuer counts its grant")
	require.Equal(t, http.StatusOK, code)
	for _, want := range []string{
		`writ_events_handled_total{consumer="policy",outcome="acked"} 1`,
		`writ_events_appended_total{component="issuer",kind="granted"} 1`,
		`writ_handle_seconds_count{consumer="issuer"}`,
		`writ_redeliveries_total{consumer="approval"} 0`,
		`writ_consumer_pending{consumer="approval-timers"}`,
		`writ_consumer_ack_pending{consumer="issuer"}`,
		`writ_requests_pending{domain="acme"}`,
		"go_goroutines", "process_resident_memory_bytes",
	} {
		assert.Contains(t, body, want)
	}

	// Logs are JSON lines, and what a component appended says which
	// request, kind and stream sequence, never a token.
	found := false
	for line := range strings.Lines(stderr.String()) {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		if rec["msg"] == "appended" && rec["component"] == "issuer" {
			found = true
			assert.Equal(t, "granted", rec["kind"])
			assert.NotEmpty(t, rec["request_id"])
			assert.NotEmpty(t, rec["stream_seq"])
		}
	}
	assert.True(t, found, stderr.String())
	assert.NotContains(t, stderr.String(), "eyJ", "no JWT in the logs")
}

func TestServeReadinessFollowsNATS(t *testing.T) {
	port := freePort(t)
	store := t.TempDir()
	start := func() *embedded.Server {
		s, err := embedded.Start(embedded.Options{Port: port, StoreDir: store})
		require.NoError(t, err)
		return s
	}
	srv := start()
	t.Cleanup(func() { srv.Shutdown() }) // the one running then, after serve has stopped
	dir := filepath.Join(t.TempDir(), "writ")
	base, _, _ := serveOps(t, dir, "--server", srv.ClientURL())
	awaitStatus(t, base+"/readyz", http.StatusOK)

	// NATS goes away: serve is alive but not ready, and says why.
	srv.Shutdown()
	body := awaitStatus(t, base+"/readyz", http.StatusServiceUnavailable)
	assert.Contains(t, body, "nats: connection")
	code, body := httpGet(t, base+"/healthz")
	assert.Equal(t, http.StatusOK, code, body)

	// Back: ready again.
	srv = start()
	awaitStatus(t, base+"/readyz", http.StatusOK)
}

func TestServeRefusesABadLogFormat(t *testing.T) {
	_, _, err := writ(t, "serve", "--dir", filepath.Join(t.TempDir(), "w"), "--log-format", "xml")
	require.Error(t, err)
	assert.Equal(t, exitUsage, exitCode(err))
	assert.Contains(t, err.Error(), "--log-format")
}

// The configuration's components list says what serve runs, as
// --components does; the flag, when given, wins.
func TestServeRunsTheConfiguredComponents(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "writ")
	_, errOut, err := writ(t, "init", "--dir", dir)
	require.NoError(t, err, errOut)
	cfg, err := config.Load(dir)
	require.NoError(t, err)
	cfg.Components = []string{"policy"}
	require.NoError(t, cfg.Save(dir))

	base, nats, _ := serveOps(t, dir, "--port", "-1")
	body := awaitStatus(t, base+"/healthz", http.StatusOK)
	assert.Contains(t, body, `"policy":"running"`)
	assert.NotContains(t, body, `"issuer"`, "only what the configuration names runs")

	// A second replica on the first one's server.
	base, _, _ = serveOps(t, dir, "--server", nats, "--components", "issuer")
	body = awaitStatus(t, base+"/healthz", http.StatusOK)
	assert.Contains(t, body, `"issuer":"running"`)
	assert.NotContains(t, body, `"policy"`, "the flag overrides the file")
}
