package fedscale_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// hubPolicies let every spoke's bots (and the hub's own) deploy to the
// hub's staging, at once.
const hubPolicies = `
@id("partners-deploy-staging")
@max_ttl("10m")
permit (principal, action == Action::"deploy", resource)
when { resource.path like "staging/*" };
`

func fromEnv[T any](t *testing.T, name string, def T, parse func(string) (T, error)) T {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	x, err := parse(v)
	require.NoError(t, err, "%s=%q", name, v)
	return x
}

// counts is what the servers say at one moment.
type counts struct {
	hubSubs, hubInserts, hubRemoves uint64
	spokeInserts, spokeRemoves      map[string]uint64
	linkSubs                        map[string]uint32 // by link (the spoke's server name)
	linkIn, linkOut                 map[string]int64  // messages each way, by link
	linkCompression                 map[string]string
}

func count(t *testing.T, envs map[string]*writtest.Env, spokes []string) counts {
	t.Helper()
	c := counts{spokeInserts: map[string]uint64{}, spokeRemoves: map[string]uint64{},
		linkSubs: map[string]uint32{}, linkIn: map[string]int64{}, linkOut: map[string]int64{}, linkCompression: map[string]string{}}
	sz, err := envs["hub"].Server.Subsz()
	require.NoError(t, err)
	c.hubSubs, c.hubInserts, c.hubRemoves = uint64(sz.NumSubs), sz.NumInserts, sz.NumRemoves
	for _, d := range spokes {
		sz, err := envs[d].Server.Subsz()
		require.NoError(t, err)
		c.spokeInserts[d], c.spokeRemoves[d] = sz.NumInserts, sz.NumRemoves
	}
	lz, err := envs["hub"].Server.Leafz()
	require.NoError(t, err)
	for _, l := range lz.Leafs {
		c.linkSubs[l.Name], c.linkIn[l.Name], c.linkOut[l.Name] = l.NumSubs, l.InMsgs, l.OutMsgs
		c.linkCompression[l.Name] = l.Compression
	}
	return c
}

// heapNow is the process's live heap, after a collection.
func heapNow() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// federate starts a hub and n spokes (s001, …) and waits until every spoke
// is linked and the hub's interest has stopped changing (what starting
// makes — consumers, watchers, first reads — is made). It returns the
// servers' counts then.
func federate(t *testing.T, n int) (map[string]*writtest.Env, []string, counts) {
	t.Helper()
	spokes := make([]string, n)
	for i := range spokes {
		spokes[i] = fmt.Sprintf("s%03d", i+1)
	}
	start := time.Now()
	envs := writtest.Federation(t, map[string]writtest.Options{"hub": {Policies: hubPolicies}}, "hub", spokes...)
	require.Eventually(t, func() bool {
		lz, err := envs["hub"].Server.Leafz()
		return err == nil && len(lz.Leafs) == n
	}, 60*time.Second, 50*time.Millisecond, "every spoke linked to the hub")
	t.Logf("%d domains up and linked in %s", n+1, time.Since(start).Round(time.Millisecond))
	settle := time.Now()
	prev := count(t, envs, spokes)
	for stable := 0; stable < 4; {
		require.Less(t, time.Since(settle), 30*time.Second, "the hub's subscriptions never stopped changing")
		time.Sleep(250 * time.Millisecond)
		c := count(t, envs, spokes)
		if c.hubInserts == prev.hubInserts && c.hubRemoves == prev.hubRemoves {
			stable++
		} else {
			stable = 0
		}
		prev = c
	}
	return envs, spokes, prev
}

// interest splits the hub's subscriptions into its own and each link's,
// checking that every link carries the same.
func interest(t *testing.T, c counts) (own, perLink uint64) {
	t.Helper()
	var sum uint64
	for name, subs := range c.linkSubs {
		// Compressed links cost the hub an s2 writer of about 5 MB each.
		assert.Equal(t, "off", c.linkCompression[name], "compression of %s's link", name)
		if perLink == 0 {
			perLink = uint64(subs)
		}
		assert.Equal(t, perLink, uint64(subs), "every link carries the same interest (%s)", name)
		sum += uint64(subs)
	}
	return c.hubSubs - sum, perLink
}

// An idle federation costs nothing that grows with its domains: while no
// request is made, no subscription is made or dropped on the hub or on any
// spoke (interest that came and went crossed every leafnode link, and its
// rate grew with the domains: the idle cost of the whole grew with their
// square) and no message crosses a link; the hub's subscriptions are its
// own plus the same per link, as many as with one spoke (linear in the
// domains); memory does not grow while idle. Then every spoke's bot asks
// the hub for one action and gets it.
func TestIdleFederationCostsNothingThatGrowsWithDomains(t *testing.T) {
	n := fromEnv(t, "WRIT_FEDSCALE_SPOKES", 19, strconv.Atoi)
	idle := fromEnv(t, "WRIT_FEDSCALE_IDLE", 5*time.Second, time.ParseDuration)
	var ownOne, perLinkOne uint64
	t.Run("one spoke", func(t *testing.T) {
		_, _, c := federate(t, 1)
		ownOne, perLinkOne = interest(t, c)
	})
	envs, spokes, before := federate(t, n)
	hub := envs["hub"]
	heapBefore := heapNow()
	cpu0, wall0 := cpuUsed(), time.Now()
	time.Sleep(idle) // the idle window: nothing is asked of anyone
	cpu := float64(cpuUsed()-cpu0) / float64(time.Since(wall0))
	after, heapAfter := count(t, envs, spokes), heapNow()

	assert.Zero(t, after.hubInserts-before.hubInserts, "subscriptions made on the hub while idle")
	assert.Zero(t, after.hubRemoves-before.hubRemoves, "subscriptions dropped on the hub while idle")
	for _, d := range spokes {
		assert.Zero(t, after.spokeInserts[d]-before.spokeInserts[d], "subscriptions made on %s while idle", d)
		assert.Zero(t, after.spokeRemoves[d]-before.spokeRemoves[d], "subscriptions dropped on %s while idle", d)
	}
	require.Len(t, after.linkSubs, n)
	for name := range after.linkSubs {
		assert.Zero(t, after.linkIn[name]-before.linkIn[name], "messages in over %s's link while idle", name)
		assert.Zero(t, after.linkOut[name]-before.linkOut[name], "messages out over %s's link while idle", name)
	}
	own, perLink := interest(t, after)
	assert.Equal(t, perLinkOne, perLink, "a link's interest, with 1 spoke and with %d", n)
	assert.Equal(t, ownOne, own, "the hub's own subscriptions, with 1 spoke and with %d", n)
	t.Logf("idle %s: CPU of the whole test process (%d domains) %.1f %% of one core", idle, n+1, 100*cpu)
	t.Logf("idle %s: hub %d subscriptions (%d its own, %d per link × %d links; with one spoke %d + %d); heap %d → %d MB",
		idle, after.hubSubs, own, perLink, n, ownOne, perLinkOne, heapBefore>>20, heapAfter>>20)
	assert.LessOrEqual(t, heapAfter, heapBefore+heapBefore/10+16<<20, "memory while idle")

	// Every spoke asks the hub; the hub's own bot asks too, for comparison.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var cross, same []time.Duration
	ask := func(e *writtest.Env) (time.Duration, error) {
		bot := e.Identity("deploy-bot")
		var id string
		var err error
		for range 50 { // until the request's subject has interest across the link
			if id, err = e.Client.Request(ctx, bot, client.Spec{Domain: "hub", Action: "deploy", Resource: "staging/web"}); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return 0, err
		}
		r, err := e.Client.Wait(ctx, "hub", id, client.Settled)
		if err != nil {
			return 0, err
		}
		if r.State.Status != request.StatusGranted {
			return 0, fmt.Errorf("%s: %s", id, r.State.Status)
		}
		return storedSpan(r), nil
	}
	// One at a time, as the hub's own: the spans compare like with like.
	for _, d := range spokes {
		took, err := ask(envs[d])
		if assert.NoError(t, err, "%s's request to the hub", d) {
			cross = append(cross, took)
		}
	}
	for range 10 {
		took, err := ask(hub)
		require.NoError(t, err)
		same = append(same, took)
	}
	require.Len(t, cross, n, "every spoke granted")
	t.Logf("hub request→grant (stored times), median: cross-domain %s (%d), same-domain %s (%d)",
		median(cross), len(cross), median(same), len(same))
}

// storedSpan is the time from the requested event's stored time to the
// granted event's: the target's server-side request→grant.
func storedSpan(r *client.Request) time.Duration {
	var from, to time.Time
	for _, rec := range r.Records {
		switch rec.Kind {
		case events.KindRequested:
			from = rec.Time
		case events.KindGranted:
			to = rec.Time
		}
	}
	return to.Sub(from)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
