package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/internal/ops"
	"github.com/writ-dev/writ/internal/writtest"
)

// metric is the value of the sample named by prefix (name and labels, as
// the text format writes them), or -1 when there is none.
func metric(body, prefix string) float64 {
	for line := range strings.Lines(body) {
		if rest, ok := strings.CutPrefix(line, prefix+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

func readiness(t *testing.T, url string) (int, ops.Report) {
	t.Helper()
	code, body := httpGet(t, url)
	var r ops.Report
	require.NoError(t, json.Unmarshal([]byte(body), &r), body)
	return code, r
}

// A spoke's `writ serve` started before its hub: ready (it serves its own
// domain) with "federation: not linked" said apart, and not ready for
// whoever requires the link, until the hub is up. The hub going away shows
// within a second; its return is a reconnect. Metrics count what crossed,
// and the log says each change at info level, with no error for a hub not
// listening yet.
func TestServeReadinessFollowsTheHubLink(t *testing.T) {
	envs := writtest.Federation(t, map[string]writtest.Options{"alpha": {NoServe: true}, "beta": {NoServe: true}}, "alpha", "beta")
	alpha, beta := envs["alpha"], envs["beta"]
	alpha.StopAll()
	beta.StopAll()
	hubCfg, err := config.Load(alpha.Dir)
	require.NoError(t, err)
	hubAddr := hubCfg.Federation.Listen

	spoke, _, spokeLog := serveOps(t, beta.Dir, "--port", "-1")
	awaitStatus(t, spoke+"/readyz", http.StatusOK)
	code, r := readiness(t, spoke+"/readyz")
	require.Equal(t, http.StatusOK, code, "%+v", r)
	require.NotNil(t, r.Federation, "%+v", r)
	assert.Equal(t, "not linked", r.Federation.State)
	assert.Equal(t, map[string]string{hubAddr: "not linked"}, r.Federation.Hubs)
	require.Len(t, r.Warnings, 1)
	assert.True(t, strings.HasPrefix(r.Warnings[0], "federation: not linked to hub "+hubAddr+" yet"), r.Warnings[0])
	code, r = readiness(t, spoke+"/readyz?require=federation")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "not linked", r.Federation.State)
	require.Len(t, r.Problems, 1)
	assert.True(t, strings.HasPrefix(r.Problems[0], "federation: not linked"), r.Problems[0])
	code, _ = httpGet(t, spoke+"/readyz?require=nothing-known")
	assert.Equal(t, http.StatusBadRequest, code)
	link := `{peer="` + hubAddr + `",role="hub"}`
	_, m := httpGet(t, spoke+"/metrics")
	assert.Equal(t, 0.0, metric(m, "writ_federation_link_up"+link), m)
	require.Eventually(t, func() bool {
		return strings.Contains(spokeLog.String(), "federation: hub "+hubAddr+" not reachable; retrying")
	}, 10*time.Second, 10*time.Millisecond, spokeLog.String())

	// The hub starts: linked within a bounded wait (the spoke retries
	// every second, with up to a second of jitter).
	hub, hubNATS, _, stopHub := serveOpsUntil(t, alpha.Dir, "--port", "-1")
	linked := time.Now()
	awaitStatus(t, spoke+"/readyz?require=federation", http.StatusOK)
	t.Logf("linked %s after the hub started", time.Since(linked).Round(time.Millisecond))
	code, r = readiness(t, spoke+"/readyz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "linked", r.Federation.State)
	assert.Empty(t, r.Warnings)
	assert.Contains(t, spokeLog.String(), "federation: linked to hub")
	// The hub counts its spokes, and a spoke not linked is no reason of
	// the hub's.
	require.Eventually(t, func() bool {
		_, r := readiness(t, hub+"/readyz")
		return r.Federation != nil && r.Federation.SpokesLinked != nil && *r.Federation.SpokesLinked == 1
	}, 5*time.Second, 10*time.Millisecond)
	code, r = readiness(t, hub+"/readyz?require=federation")
	assert.Equal(t, http.StatusOK, code, "%+v", r)
	assert.Equal(t, 1, r.Federation.Spokes)
	assert.Empty(t, r.Federation.State, "a hub dials no hub")
	_, m = httpGet(t, hub+"/metrics")
	assert.Equal(t, 1.0, metric(m, `writ_federation_link_up{peer="writ-beta",role="spoke"}`), m)

	// A request from the hub's domain into the spoke's crosses the link.
	_, m = httpGet(t, spoke+"/metrics")
	assert.Equal(t, 1.0, metric(m, "writ_federation_link_up"+link))
	in, out := metric(m, `writ_federation_link_messages_total{direction="in",peer="`+hubAddr+`",role="hub"}`), metric(m, `writ_federation_link_messages_total{direction="out",peer="`+hubAddr+`",role="hub"}`)
	require.GreaterOrEqual(t, in, 0.0, m)
	var rout, rerr string
	require.Eventually(t, func() bool { // once the spoke's interest has crossed to the hub
		rout, rerr, err = writ(t, "request", "--dir", alpha.Dir, "--server", hubNATS, "--creds", filepath.Join(alpha.Dir, "creds", "carol.creds"),
			"--domain", "beta", "--action", "restart", "--resource", "prod/db", "--reason", "across")
		return err == nil
	}, 10*time.Second, 100*time.Millisecond, "%s %s %v", rout, rerr, err)
	_, m = httpGet(t, spoke+"/metrics")
	assert.Greater(t, metric(m, `writ_federation_link_messages_total{direction="in",peer="`+hubAddr+`",role="hub"}`), in, "the request came in")
	assert.Greater(t, metric(m, `writ_federation_link_messages_total{direction="out",peer="`+hubAddr+`",role="hub"}`), out, "its acknowledgement went out")
	assert.Positive(t, metric(m, `writ_federation_link_bytes_total{direction="in",peer="`+hubAddr+`",role="hub"}`))
	assert.Positive(t, metric(m, `writ_federation_link_subscriptions`+link), "the hub's interest")
	assert.Equal(t, 0.0, metric(m, "writ_federation_link_reconnects_total"+link))

	// The hub goes: the spoke's readiness says so within a second.
	stopHub()
	lost := time.Now()
	var body string
	for code = http.StatusOK; code != http.StatusServiceUnavailable && time.Since(lost) < time.Second; {
		code, body = httpGet(t, spoke+"/readyz?require=federation")
	}
	took := time.Since(lost)
	require.Equal(t, http.StatusServiceUnavailable, code, "after %s: %s", took, body)
	t.Logf("link lost seen after %s", took.Round(time.Millisecond))
	assert.Contains(t, body, "federation: not linked to hub "+hubAddr+" since")
	code, _ = httpGet(t, spoke+"/readyz")
	assert.Equal(t, http.StatusOK, code, "the spoke still serves its own domain")
	require.Eventually(t, func() bool {
		return strings.Contains(spokeLog.String(), "federation: link to hub lost; retrying")
	}, 5*time.Second, 10*time.Millisecond, spokeLog.String())

	// Back: linked again, one reconnect counted.
	serveOps(t, alpha.Dir, "--port", "-1")
	awaitStatus(t, spoke+"/readyz?require=federation", http.StatusOK)
	_, m = httpGet(t, spoke+"/metrics")
	assert.Equal(t, 1.0, metric(m, "writ_federation_link_up"+link))
	assert.Equal(t, 1.0, metric(m, "writ_federation_link_reconnects_total"+link))
	assert.Equal(t, 2, strings.Count(spokeLog.String(), "federation: linked to hub"), spokeLog.String())
	assert.NotRegexp(t, regexp.MustCompile(`level=ERROR`), spokeLog.String(), "a hub not reachable is no error")
}
