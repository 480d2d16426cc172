package clustertest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// TestRollingRestartOfNodes restarts the three NATS nodes one at a time,
// the way an operator upgrades a cluster, while two Writ replicas serve a
// mixed load. Each node goes down in an orderly way (it hands over the
// raft groups it leads), and the next goes only once every stream and
// consumer is current again. No request may fail: every request and vote
// is acknowledged on its first attempt, and every request is granted.
// WRIT_LONG=1 goes round the cluster three times.
func TestRollingRestartOfNodes(t *testing.T) {
	rounds := 1
	if long() {
		rounds = 3
	}
	c := writtest.Cluster(t, 3, writtest.Options{})
	c.ServeReplicas(2)
	clients := []*client.Client{c.NewClient(0), c.NewClient(1), c.NewClient(2)}
	bot, carol := c.Identity("deploy-bot"), c.Identity("carol")
	voters := []*identity.Identity{c.Identity("alice"), c.Identity("bob")}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute) // a stuck run's safety net
	defer cancel()

	var (
		made, granted atomic.Int64
		restarted     atomic.Bool
		mu            sync.Mutex
		failures      []string
		slowest       time.Duration
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf(format, args...))
	}
	// One request, and its two votes where it needs them: each call must
	// succeed the first time, within 10 s.
	one := func(cl *client.Client, i int64) {
		review := i%4 == 3
		who, spec := bot, client.Spec{Domain: c.Domain, Action: "deploy", Resource: fmt.Sprintf("staging/web-%d", i)}
		if review {
			who, spec = carol, client.Spec{Domain: c.Domain, Action: "restart", Resource: fmt.Sprintf("prod/svc-%d", i)}
		}
		start := time.Now()
		actx, acancel := context.WithTimeout(ctx, 10*time.Second)
		defer acancel()
		id, err := cl.Request(actx, who, spec)
		if err != nil {
			fail("request %d: %v", i, err)
			return
		}
		if review {
			r, err := cl.Wait(actx, c.Domain, id, func(s request.State) bool { return s.Status.IsPending() })
			if err == nil && !r.State.Status.IsPending() {
				err = fmt.Errorf("request ended %s", r.State.Status)
			}
			for _, v := range voters {
				if err == nil {
					_, err = cl.Vote(actx, v, c.Domain, id, client.Vote{Approve: true})
				}
			}
			if err != nil {
				fail("request %d (%s) votes: %v", i, id, err)
				return
			}
		}
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		r, err := cl.Wait(wctx, c.Domain, id, client.Settled)
		if err != nil {
			fail("request %d (%s) did not settle: %v", i, id, err)
			return
		}
		if r.State.Status != request.StatusGranted {
			fail("request %d (%s) ended %s", i, id, r.State.Status)
			return
		}
		granted.Add(1)
		mu.Lock()
		slowest = max(slowest, time.Since(start))
		mu.Unlock()
	}
	var load sync.WaitGroup
	for k := range 6 {
		load.Go(func() {
			cl := clients[k%len(clients)]
			for ctx.Err() == nil && !restarted.Load() {
				one(cl, made.Add(1))
			}
		})
	}

	// Each node in turn, once the load has moved on since the last.
	progress := func(n int64) {
		t.Helper()
		want := granted.Load() + n
		for granted.Load() < want {
			require.NoError(t, ctx.Err(), "requests stopped being granted at %d", granted.Load())
			time.Sleep(10 * time.Millisecond)
		}
	}
	restarts := 0
	var longest time.Duration
	for range rounds {
		for i := range c.Nodes {
			progress(30)
			t0 := time.Now()
			c.Kill(i)
			progress(10) // the cluster goes on with two nodes
			c.Restart(i)
			c.AwaitJetStream(time.Minute)
			c.AwaitCurrent(2 * time.Minute)
			took := time.Since(t0)
			longest = max(longest, took)
			restarts++
			t.Logf("node %s restarted and current again in %s, at %d granted", c.Nodes[i].Name, took.Round(time.Millisecond), granted.Load())
		}
	}
	progress(30)
	restarted.Store(true)
	load.Wait()

	rctx, rcancel := context.WithTimeout(t.Context(), time.Minute)
	defer rcancel()
	rep, err := audit.VerifyStream(rctx, store.Reader{NC: c.NC, Stream: c.Runtime.Config.Stream.Name}, audit.Options{Bundle: c.Runtime.Bundle}, nil)
	require.NoError(t, err)
	for _, f := range rep.Findings {
		t.Logf("audit finding: %+v", f)
	}
	if !assert.True(t, rep.OK(), "the trail verifies") {
		dumpCheckpoints(t, c)
	}
	assert.Empty(t, failures, "no request failed")
	assert.EqualValues(t, made.Load(), granted.Load()+int64(len(failures)))
	assert.EqualValues(t, granted.Load(), rep.Requests, "every request recorded once")
	t.Logf("%d node restarts (%d rounds), %d requests made, %d granted, %d failed; longest node restart until current %s; slowest request %s; trail %d messages verified",
		restarts, rounds, made.Load(), granted.Load(), len(failures), longest.Round(time.Millisecond), slowest.Round(time.Millisecond), rep.Messages)
}

// dumpCheckpoints logs the domain's checkpoint series as the stream holds
// it: when its chain breaks, which append broke it.
func dumpCheckpoints(t *testing.T, c *writtest.ClusterEnv) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	r := store.Reader{NC: c.NC, Stream: c.Runtime.Config.Stream.Name}
	ms, err := r.Load(ctx, audit.Subject(c.Domain), 1)
	if err != nil {
		t.Logf("checkpoint series: %v", err)
		return
	}
	checker := events.Checker{Bundle: c.Runtime.Bundle}
	for _, m := range ms {
		rec := checker.Inspect(m, time.Time{})
		cp, _ := rec.Data.(*events.Checkpoint)
		if cp == nil {
			t.Logf("#%d not a checkpoint: %v", m.Seq, rec.Err)
			continue
		}
		t.Logf("#%d digest %s prev %s tree %d (#%d..#%d) msg-id %s stored %s", m.Seq, short(rec.Digest), short(cp.Prev),
			cp.TreeSize, cp.FirstSeq, cp.LastSeq, first(m.Header["Nats-Msg-Id"]), m.Time.Format(time.StampMicro))
	}
}

func short(s string) string { return s[:min(len(s), 12)] }

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}
