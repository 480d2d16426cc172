package main

import (
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// deltaMayRestartDev: delta's developers restart dev services at once.
const deltaMayRestartDev = `
@id("delta-developers-restart-dev")
@max_ttl("10m")
permit (principal in Group::"delta/developers", action == Action::"restart", resource)
when { resource.path like "dev/*" };
`

// Two hubs: alpha serves gamma, beta serves delta, and beta links to
// alpha as one of its spokes, its link carrying delta too. delta's carol
// asks for a restart in gamma (across beta, alpha) and in alpha (across
// beta): granted, with the grant on her own side, and the history read
// from her domain's setup as an auditor there reads it.
func TestCrossHubRequest(t *testing.T) {
	o := map[string]writtest.Options{"alpha": {Policies: deltaMayRestartDev}, "gamma": {Policies: deltaMayRestartDev}}
	envs := writtest.HubOfHubs(t, o, writtest.Hub{Domain: "alpha", Spokes: []string{"gamma"}}, writtest.Hub{Domain: "beta", Spokes: []string{"delta"}})
	delta := envs["delta"]
	common := []string{"--dir", delta.Dir, "--server", delta.Server.ClientURL()}
	for _, target := range []string{"gamma", "alpha"} {
		t.Run("in "+target, func(t *testing.T) {
			// The links are up once delta reads the target's stream.
			require.Eventually(t, func() bool {
				_, err := delta.NC.Request("$JS."+target+".API.STREAM.INFO.WRIT", nil, time.Second)
				return err == nil
			}, 30*time.Second, 100*time.Millisecond, "delta reaches %s", target)

			out, errOut, err := writ(t, append([]string{"request", "--creds", filepath.Join(delta.Dir, "creds", "carol.creds"),
				"--domain", target, "--action", "restart", "--resource", "dev/db", "--wait"}, common...)...)
			require.NoError(t, err, errOut)
			assert.Regexp(t, `^[\w-]+\.[\w-]+\.[\w-]+\n$`, out, "the grant, opened by carol")
			assert.Contains(t, errOut, "granted (delta-developers-restart-dev)")
			m := regexp.MustCompile(`request (\S+): restart dev/db in ` + target + `, as delta/carol`).FindStringSubmatch(errOut)
			require.NotNil(t, m, errOut)
			id := m[1]

			// The target's own record says the same.
			r := envs[target].Settle(id)
			require.Equal(t, request.StatusGranted, r.State.Status, "%v", writtest.Kinds(r))
			writtest.AssertOneEnd(t, r)

			// Read from delta's setup, with delta's reader creds: the
			// whole history, every event checked.
			out, errOut, err = writ(t, append([]string{"audit", "replay", "--domain", target, "--request", id, "--format", "table"}, common...)...)
			require.NoError(t, err, errOut)
			row := lineWith(out, id)
			assert.Contains(t, row, "delta/carol")
			assert.Contains(t, row, "granted")
			out, errOut, err = writ(t, append([]string{"audit", "replay", "--domain", target, "--request", id}, common...)...)
			require.NoError(t, err, errOut)
			for _, k := range writtest.Kinds(r) {
				assert.Contains(t, out, k, "the timeline shows every event")
			}
			assert.Equal(t, len(r.Records), strings.Count(out, "\n  #"), "one line an event:\n%s", out)
		})
	}

	// The other way: delta's decisions reach a waiter in gamma as they are
	// made (beta forwards its spokes' component events to alpha, as it
	// forwards its own), not only when the waiter reads delta's stream.
	t.Run("decisions heard in gamma", func(t *testing.T) {
		sub, err := envs["gamma"].NC.SubscribeSync("writ.delta.>")
		require.NoError(t, err)
		defer sub.Unsubscribe()
		// Interest crosses three links: once gamma hears an event of a
		// request, it hears the rest of it.
		for range 20 {
			id := delta.Request("carol", client.Spec{Action: "restart", Resource: "dev/db"})
			prefix, heard := "writ.delta."+id+".", false
			for {
				wait := 2 * time.Second
				if heard {
					wait = 10 * time.Second
				}
				m, err := sub.NextMsg(wait)
				if errors.Is(err, nats.ErrTimeout) && !heard {
					break // not yet linked: another request
				}
				require.NoError(t, err, "gamma hears delta's decision on %s", id)
				if !strings.HasPrefix(m.Subject, prefix) {
					continue // an earlier request's, heard late
				}
				if heard = true; m.Subject == prefix+"granted" {
					return
				}
			}
		}
		t.Fatal("gamma heard none of 20 requests of delta")
	})
}
