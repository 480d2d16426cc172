package clustertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// long reports whether the long versions run (WRIT_LONG=1).
func long() bool { return os.Getenv("WRIT_LONG") != "" }

// TestClusterFailover runs a mixed load (three auto-approved requests to
// one that needs alice and bob) against two Writ replicas on a three-node
// cluster with the audit stream R3, and mid-load kills the stream's leader
// and one Writ replica (in the long version three times over, the replica
// abruptly, each replaced). Clients retry across the failover. Every
// acknowledged request must reach exactly one terminal event — a grant,
// with its approvals where it needs them — and the whole trail must verify.
// CI: 200 requests, one failover, the replica stopped the way Ctrl-C stops
// it (an abrupt kill holds its messages for the consumers' 5s AckWait);
// WRIT_LONG=1: 2,000 requests, three failovers, replicas killed.
func TestClusterFailover(t *testing.T) {
	// Budgets are safety nets for a stuck run, far beyond what a run takes.
	total, failovers, abrupt, budget, settle := 200, 1, false, 4*time.Minute, 2*time.Minute
	if long() {
		total, failovers, abrupt, budget, settle = 2000, 3, true, 15*time.Minute, 5*time.Minute
	}
	start := time.Now()
	c := writtest.Cluster(t, 3, writtest.Options{})
	replicas := c.ServeReplicas(2)
	clients := []*client.Client{c.NewClient(0), c.NewClient(1), c.NewClient(2)}
	bot, carol := c.Identity("deploy-bot"), c.Identity("carol")
	voters := []*identity.Identity{c.Identity("alice"), c.Identity("bob")}
	ctx, cancel := context.WithTimeout(t.Context(), budget)
	defer cancel()

	var (
		mu        sync.Mutex
		acked     = map[string]bool{} // request id → needs approvers
		nAcked    atomic.Int64
		failures  atomic.Int64 // attempts that returned an error (and were retried)
		confirmed atomic.Int64 // requests of unknown outcome found by their id
		probeIDs  []string
		firstErr  = map[string]error{}
	)
	failed := func(what string, err error) {
		failures.Add(1)
		mu.Lock()
		if _, ok := firstErr[what]; !ok {
			firstErr[what] = err
		}
		mu.Unlock()
	}

	// One request: asked until the stream acknowledges one. A request whose
	// outcome is unknown is looked up by its id, as its error says; found,
	// it counts as acknowledged; not found, the requester asks again (a new
	// request), and the first may still be recorded later. Then, if it
	// needs approvers, both votes, each retried until acknowledged or seen
	// counted.
	one := func(i int) error {
		cl := clients[i%len(clients)]
		review := i%4 == 3
		who, spec := bot, client.Spec{Domain: c.Domain, Action: "deploy", Resource: fmt.Sprintf("staging/web-%d", i)}
		if review {
			who, spec = carol, client.Spec{Domain: c.Domain, Action: "restart", Resource: fmt.Sprintf("prod/svc-%d", i)}
		}
		var id string
		for {
			if ctx.Err() != nil {
				return fmt.Errorf("request %d never acknowledged: %w", i, ctx.Err())
			}
			actx, acancel := context.WithTimeout(ctx, 5*time.Second)
			got, err := cl.Request(actx, who, spec)
			acancel()
			if err == nil {
				id = got
				break
			}
			failed("request", err)
			if errors.Is(err, client.ErrOutcomeUnknown) && got != "" && lookUp(ctx, cl, c.Domain, got) {
				id = got
				confirmed.Add(1)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		mu.Lock()
		acked[id] = review
		mu.Unlock()
		nAcked.Add(1)
		if !review {
			return nil
		}
		pending := func(s request.State) bool { return s.Status.IsPending() }
		if r := follow(ctx, cl, c.Domain, id, pending); r == nil || !pending(r.State) {
			return fmt.Errorf("request %s never pending: %w", id, ctx.Err())
		}
		for _, v := range voters {
			if err := voteUntilCounted(ctx, cl, v, c.Domain, id, failed); err != nil {
				return err
			}
		}
		return nil
	}

	jobs := make(chan int)
	var g errgroup.Group
	g.Go(func() error {
		defer close(jobs)
		for i := range total {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return nil
			}
		}
		return nil
	})
	for range 16 {
		g.Go(func() error {
			for i := range jobs {
				if err := one(i); err != nil {
					return err
				}
			}
			return nil
		})
	}

	// Meanwhile, failovers at even steps of the load: kill the audit
	// stream's leader and a Writ replica, then bring the node back before
	// the next.
	// A probe: a new auto-approved request, asked until acknowledged, then
	// followed until granted; how long that took from a given instant.
	probes := c.NewClient(0)
	probe := func(from time.Time) time.Duration {
		t.Helper()
		for {
			require.NoError(t, ctx.Err(), "no probe request granted")
			actx, acancel := context.WithTimeout(ctx, 5*time.Second)
			id, err := probes.Request(actx, bot, client.Spec{Domain: c.Domain, Action: "deploy", Resource: "staging/probe"})
			acancel()
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			mu.Lock()
			probeIDs = append(probeIDs, id)
			mu.Unlock()
			if r := follow(ctx, probes, c.Domain, id, client.Settled); r != nil && r.State.Status == request.StatusGranted {
				return time.Since(from)
			}
		}
	}
	baseline := probe(time.Now())
	var recoveries []time.Duration
	type kill struct{ at, down time.Time }
	var kills []kill
	for k := range failovers {
		at := int64(total * (k + 1) / (failovers + 2))
		for nAcked.Load() < at && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		require.NoError(t, ctx.Err(), "the load never reached %d acknowledged requests", at)
		leader := c.StreamLeader(c.Runtime.Config.Stream.Name)
		require.GreaterOrEqual(t, leader, 0, "a stream leader to kill")
		// The replica whose preferred node dies goes too, if there is one.
		victim := slices.IndexFunc(replicas, func(r *writtest.Replica) bool { return r.Node == leader })
		if victim < 0 {
			victim = k % len(replicas)
		}
		if abrupt {
			replicas[victim].Kill()
		} else {
			// First, so that it finishes what it holds while it can.
			replicas[victim].Stop()
		}
		killAt := time.Now()
		c.Kill(leader)
		kills = append(kills, kill{killAt, time.Now()})
		next := c.AwaitStreamLeader(c.Runtime.Config.Stream.Name, time.Minute)
		elected := time.Since(killAt)
		// Recovery: from the kill until a request made after it is granted.
		recoveries = append(recoveries, probe(killAt).Round(time.Millisecond))
		t.Logf("failover %d: killed node %s (stream leader) and the replica preferring node %s at %d acknowledged; new leader %s after %s; a new request granted %s after the kill",
			k+1, c.Nodes[leader].Name, c.Nodes[replicas[victim].Node].Name, at, c.Nodes[next].Name, elected.Round(time.Millisecond), recoveries[k])
		if long() {
			// A supervisor replaces the replica, on a node that runs.
			replicas[victim] = c.Serve(next, "")
		} else {
			replicas = slices.Delete(replicas, victim, victim+1)
		}
		time.Sleep(time.Second)
		c.Restart(leader)
		c.AwaitJetStream(time.Minute)
		c.AwaitStreamLeader(c.Runtime.Config.Stream.Name, time.Minute)
	}
	require.NoError(t, g.Wait())
	loaded := time.Since(start)

	// Every acknowledged request settles.
	sctx, scancel := context.WithTimeout(t.Context(), settle)
	defer scancel()
	results := map[string]*client.Request{}
	var sg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for id := range acked {
		sem <- struct{}{}
		sg.Go(func() {
			defer func() { <-sem }()
			r := follow(sctx, c.Client, c.Domain, id, client.Settled)
			mu.Lock()
			results[id] = r
			mu.Unlock()
		})
	}
	sg.Wait()
	scancel()

	ctx, cancel = context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c.AwaitStreamLeader(c.Runtime.Config.Stream.Name, time.Minute)
	var lost []string
	for id, review := range acked {
		r := results[id]
		if r == nil {
			if _, err := c.Client.Load(ctx, c.Domain, id); errors.Is(err, client.ErrNotFound) {
				lost = append(lost, id)
			} else {
				t.Errorf("request %s: no history read: %v", id, err)
			}
			continue
		}
		assertOneEnd(t, r)
		if !assert.Equal(t, request.StatusGranted, r.State.Status, "request %s: %v", id, writtest.Kinds(r)) {
			continue
		}
		if review {
			assert.ElementsMatch(t, []string{"alice", "bob"}, voterNames(r), "request %s: the grant has its approvals", id)
			assert.Contains(t, writtest.Kinds(r), "approved", id)
		}
	}

	// Across the whole stream, acknowledged or not: one end per request.
	reader := store.Reader{NC: c.NC, Stream: c.Runtime.Config.Stream.Name}
	ends := map[string]int{}
	var grantTimes []time.Time
	for _, k := range []events.Kind{events.KindGranted, events.KindDenied, events.KindExpired, events.KindRejected} {
		msgs, err := reader.Load(ctx, events.KindFilter(k), 1)
		require.NoError(t, err)
		for _, m := range msgs {
			_, id, _, err := events.ParseSubject(m.Subject)
			require.NoError(t, err)
			ends[id]++
			if k == events.KindGranted {
				grantTimes = append(grantTimes, m.Time)
			}
		}
	}
	// The pipeline resumed: from each kill to the first grant stored once
	// the killed node was down (a stored time is when the leader took the
	// message in, so a grant the old leader took in as it went is not one).
	slices.SortFunc(grantTimes, func(a, b time.Time) int { return a.Compare(b) })
	var resumed []time.Duration
	for _, k := range kills {
		i, _ := slices.BinarySearchFunc(grantTimes, k.down, func(a, b time.Time) int { return a.Compare(b) })
		if assert.Less(t, i, len(grantTimes), "a grant after the kill at %s", k.at) {
			resumed = append(resumed, grantTimes[i].Sub(k.at).Round(time.Millisecond))
		}
	}
	duplicates := 0
	for id, n := range ends {
		if n > 1 {
			duplicates += n - 1
			t.Errorf("request %s has %d terminal events", id, n)
		}
	}
	// Requests of unknown outcome that the stream recorded after all, once
	// their requester had asked again.
	requested, err := reader.Load(ctx, events.KindFilter(events.KindRequested), 1)
	require.NoError(t, err)
	unknown := 0
	for _, m := range requested {
		_, id, _, err := events.ParseSubject(m.Subject)
		require.NoError(t, err)
		if _, ok := acked[id]; !ok && !slices.Contains(probeIDs, id) {
			unknown++
		}
	}

	rep, err := audit.VerifyStream(ctx, reader, audit.Options{Bundle: c.Runtime.Bundle}, nil)
	require.NoError(t, err)
	for _, f := range rep.Findings {
		t.Logf("audit finding: %+v", f)
	}
	assert.True(t, rep.OK(), "the trail verifies: %d errors", rep.Errors)

	t.Logf("requests run %d (%d needing two approvers), acknowledged %d (%d of them confirmed by looking up a request of unknown outcome), attempts failed and retried %d, failovers %d, lost acknowledged %d, duplicate terminal events %d, recovery: pipeline granting again %v after the kill, a request made after the kill granted %v after it, longest %s (a request's time without a failover: %s); requests of unknown outcome the stream recorded after their requester asked again %d; stream %d messages, audit verified %v (%d errors, %d warnings); load %s, total %s",
		total, total/4, len(acked), confirmed.Load(), failures.Load(), len(kills), len(lost), duplicates, resumed, recoveries, slices.Max(append(recoveries, 0)), baseline.Round(time.Millisecond),
		unknown, rep.Messages, rep.OK(), rep.Errors, rep.Warnings, loaded.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	for what, err := range firstErr {
		t.Logf("first %s error retried: %v", what, err)
	}
	assert.Empty(t, lost, "acknowledged requests lost")
	assert.Zero(t, duplicates, "duplicate terminal events")
	assert.Equal(t, total, len(acked))
}

// follow reads a request until done holds or ctx ends, reading again after
// a read that fails (a failover; a read of a replicated stream that goes
// unanswered under load), and returns the last state read. Reads may come
// from a replica of the stream that lags: done must hold for a state, not
// for every state read after it.
func follow(ctx context.Context, cl *client.Client, domain, id string, done func(request.State) bool) *client.Request {
	var last *client.Request
	for ctx.Err() == nil {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r, err := cl.Wait(wctx, domain, id, done)
		cancel()
		if r != nil {
			last = r
		}
		if err == nil {
			return r
		}
	}
	return last
}

// lookUp reads a request whose outcome was unknown, a few times over a
// couple of seconds (a replica of the stream may lag), and reports whether
// the stream holds it.
func lookUp(ctx context.Context, cl *client.Client, domain, id string) bool {
	for range 5 {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cl.Load(rctx, domain, id)
		cancel()
		if err == nil {
			return true
		}
		time.Sleep(400 * time.Millisecond)
	}
	return false
}

// voteUntilCounted votes as v until the stream acknowledges the vote, or a
// read shows it counted (a vote whose acknowledgement was lost may have
// been stored: voting again would only be refused as a duplicate). A read
// that shows the request not yet pending comes from a replica of the stream
// that lags behind (direct gets are served by followers too): read again.
func voteUntilCounted(ctx context.Context, cl *client.Client, v *identity.Identity, domain, id string, failed func(string, error)) error {
	for {
		if ctx.Err() != nil {
			return fmt.Errorf("request %s: %s's vote never acknowledged: %w", id, v.Principal.Name, ctx.Err())
		}
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		r, err := cl.Load(actx, domain, id)
		if err == nil {
			st := r.State
			switch {
			case slices.ContainsFunc(st.Votes, func(x request.Vote) bool { return x.Voter.ID() == v.Principal.ID() }),
				st.Status.IsClosed(), st.Status.AwaitsGrant():
				acancel()
				return nil
			case st.Collecting():
				_, err = cl.Vote(actx, v, domain, id, client.Vote{Approve: true})
			default:
				err = fmt.Errorf("read the request as %s", st.Status)
			}
		}
		acancel()
		if err == nil {
			return nil
		}
		failed("vote", err)
		time.Sleep(100 * time.Millisecond)
	}
}

func voterNames(r *client.Request) []string {
	var out []string
	for _, v := range r.State.Votes {
		out = append(out, v.Voter.Name)
	}
	return out
}

// assertOneEnd checks that a request's history holds exactly one terminal
// event, one evaluation and one approval at most, and nothing a component
// emitted that the fold refused.
func assertOneEnd(t *testing.T, r *client.Request) {
	t.Helper()
	writtest.AssertOneEnd(t, r)
	for _, rec := range r.Records {
		if err := r.Errs[rec.Seq]; err != nil && !rec.Kind.FromPrincipal() {
			t.Errorf("request %s: component event %s (seq %d) changed nothing: %v", r.State.ID, rec.Kind, rec.Seq, err)
		}
	}
}
