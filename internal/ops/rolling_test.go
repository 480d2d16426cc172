package ops_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// Two replicas share the durable consumers; each is stopped and started
// again in turn while requests keep coming. Every request made is granted:
// a replica that stops finishes what it holds and the other takes the rest.
// A message a stopping replica took and dropped would stay unacknowledged
// until the ack wait (5s) ran out and come back then, unasked: the test
// waits for every message to be acknowledged and finds no redelivery of a
// message never naked that is older than the ack wait. (A delivery the
// server sent as a replica unsubscribed reaches no one, and the server
// hands it to the other replica at once: a redelivery, but no loss.)
func TestRollingRestartFailsNoRequest(t *testing.T) {
	const (
		autoRequests = 300 // at least, from 4 requesters
		requesters   = 4
		twoApprovers = 20 // at least, one at a time
		most         = 2000
	)
	e := writtest.Start(t, writtest.Options{NoServe: true})
	a, b := newReplica(t, e), newReplica(t, e)
	a.start()
	b.start()
	a.ready(http.StatusOK)
	b.ready(http.StatusOK)

	var (
		made, granted, reviewed atomic.Int64
		restarted               atomic.Bool
		mu                      sync.Mutex
		failures                []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf(format, args...))
	}
	bot, carol := e.Identity("deploy-bot"), e.Identity("carol")
	alice, bob := e.Identity("alice"), e.Identity("bob")
	// settle waits for a request's outcome; one still open after a minute
	// is stuck.
	var slowest atomic.Int64 // ns, for the log
	settle := func(id string) request.Status {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		r, err := e.Client.Wait(ctx, e.Domain, id, client.Settled)
		for took := int64(time.Since(start)); ; {
			if old := slowest.Load(); took <= old || slowest.CompareAndSwap(old, took) {
				break
			}
		}
		if err != nil {
			return request.StatusNone
		}
		return r.State.Status
	}
	ask := func(who *identity.Identity, s client.Spec) string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Domain = e.Domain
		id, err := e.Client.Request(ctx, who, s)
		if err != nil {
			fail("request: %v", err)
		}
		return id
	}

	var wg sync.WaitGroup
	for range requesters {
		wg.Go(func() {
			// Until the restarts are done and enough were made.
			for made.Load() < most && (made.Load() < autoRequests || !restarted.Load()) {
				made.Add(1)
				id := ask(bot, client.Spec{Action: "deploy", Resource: "staging/web"})
				if id == "" {
					continue
				}
				if st := settle(id); st != request.StatusGranted {
					fail("auto-approved request %s: %s", id, outcome(st))
					continue
				}
				granted.Add(1)
			}
		})
	}
	wg.Go(func() {
		for n := 0; n < most/10 && (n < twoApprovers || !restarted.Load()); n++ {
			id := ask(carol, client.Spec{Action: "restart", Resource: "prod/db"})
			if id == "" {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			_, err := e.Client.Wait(ctx, e.Domain, id, func(s request.State) bool { return s.Status == request.StatusPending })
			for _, who := range []*identity.Identity{alice, bob} {
				if err == nil {
					_, err = e.Client.Vote(ctx, who, e.Domain, id, client.Vote{Approve: true})
				}
			}
			cancel()
			if err != nil {
				fail("two-approver request %s: %v", id, err)
				continue
			}
			if st := settle(id); st != request.StatusGranted {
				fail("two-approver request %s: %s", id, outcome(st))
				continue
			}
			reviewed.Add(1)
		}
	})

	// The restarts, each once the load has moved on since the last.
	after := func(n int64) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); granted.Load() < n; time.Sleep(5 * time.Millisecond) {
			require.True(t, time.Now().Before(deadline), "requests stopped being granted at %d", granted.Load())
		}
	}
	stops, starts := 0, 0
	for i, r := range []*replica{a, b} {
		after(int64(40 + 80*i))
		t0 := time.Now()
		r.halt()
		t.Logf("replica %d stopped in %s, at %d granted", i, time.Since(t0).Round(time.Millisecond), granted.Load())
		stops++
		code, body := r.get("/readyz")
		assert.Equal(t, http.StatusServiceUnavailable, code, "a stopped replica is not ready: %s", body)
		after(int64(80 + 80*i))
		t0 = time.Now()
		r.start()
		starts++
		r.ready(http.StatusOK)
		t.Logf("replica %d ready again in %s, at %d granted", i, time.Since(t0).Round(time.Millisecond), granted.Load())
	}
	restarted.Store(true)
	wg.Wait()

	assert.Empty(t, failures)
	assert.Equal(t, [2]int{2, 2}, [2]int{stops, starts}, "stopped and started each replica")
	assert.GreaterOrEqual(t, granted.Load(), int64(autoRequests))
	assert.GreaterOrEqual(t, reviewed.Load(), int64(twoApprovers))
	handled := metric(t, a.ops.Registry(), "writ_events_handled_total", "consumer", "policy", "outcome", "acked") +
		metric(t, b.ops.Registry(), "writ_events_handled_total", "consumer", "policy", "outcome", "acked")
	assert.GreaterOrEqual(t, handled, float64(granted.Load()+reviewed.Load()), "every request was handled by one replica or the other")
	for _, r := range []*replica{a, b} {
		require.Eventually(t, func() bool {
			return metric(t, r.ops.Registry(), "writ_requests_pending", "domain", "acme") == 0
		}, 10*time.Second, 20*time.Millisecond, "no request left waiting")
	}
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	durables := b.durables()
	require.NotEmpty(t, durables)
	require.Eventually(t, func() bool {
		for _, d := range durables {
			info, err := js.Consumer(context.Background(), d.Stream, d.Consumer)
			if err != nil || info.CachedInfo().NumAckPending != 0 || info.CachedInfo().NumPending != 0 {
				return false
			}
		}
		return true
	}, 3*consumers.AckWait, 20*time.Millisecond, "every message delivered and acknowledged")
	// Stopped, each has finished what it held: every handling is recorded.
	a.halt()
	b.halt()
	type key struct {
		consumer string
		seq      uint64
	}
	naked := map[key]bool{}
	var redelivered []handling
	for _, h := range append(a.rec.all(), b.rec.all()...) {
		if h.Outcome == consumers.Retried {
			naked[key{h.consumer, h.Seq}] = true
		}
		if h.Delivered > 1 {
			redelivered = append(redelivered, h)
		}
	}
	asked, handedOn, lost := 0, 0, 0
	for _, h := range redelivered {
		switch {
		case naked[key{h.consumer, h.Seq}]:
			asked++
		case h.Age < consumers.AckWait:
			handedOn++
		default:
			lost++
			t.Errorf("consumer %s: message %d came back unasked after %s: taken by a stopping replica and lost", h.consumer, h.Seq, h.Age)
		}
	}
	t.Logf("%d auto-approved and %d two-approver requests granted across %d stops and %d starts; %d failures; %d redeliveries: %d naked, %d handed on at once, %d lost; slowest wait for an outcome %s",
		granted.Load(), reviewed.Load(), stops, starts, len(failures), len(redelivered), asked, handedOn, lost, time.Duration(slowest.Load()).Round(time.Millisecond))
}

func outcome(st request.Status) string {
	if st == request.StatusNone {
		return "no outcome within a minute"
	}
	return "ended " + st.String()
}
