package ops_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/identity/connect"
	"github.com/writ-dev/writ/internal/embedded"
	"github.com/writ-dev/writ/internal/ops"
	"github.com/writ-dev/writ/internal/pipeline"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// interval is the tests' sampling interval: short, so that readiness
// follows within moments.
const interval = 100 * time.Millisecond

// replica is one pipeline with its own connection and Ops, as one
// `writ serve --http` process would have; its Ops outlives restarts of the
// pipeline, so that readiness can be watched across them.
type replica struct {
	t    *testing.T
	e    *writtest.Env
	nc   *nats.Conn
	ops  *ops.Ops
	url  string     // the operations endpoints, on loopback
	rec  *handlings // ops, recording the messages naked or redelivered
	mu   sync.Mutex
	stop func()
	durs []consumers.Durable // the pipeline's, once started
}

// handlings is an observer (ops, here) that also records what became of
// every message naked or delivered more than once.
type handlings struct {
	consumers.Observer
	mu   sync.Mutex
	list []handling
}

type handling struct {
	consumer string
	consumers.Handled
}

func (r *handlings) Consumer(d consumers.Durable, workers int) consumers.ConsumerProbe {
	return &handlingProbe{ConsumerProbe: r.Observer.Consumer(d, workers), consumer: d.Name, to: r}
}

// all returns what was recorded so far.
func (r *handlings) all() []handling {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.list)
}

type handlingProbe struct {
	consumers.ConsumerProbe
	consumer string
	to       *handlings
}

func (p *handlingProbe) End(slot int, h consumers.Handled) {
	p.ConsumerProbe.End(slot, h)
	if h.Delivered > 1 || h.Outcome == consumers.Retried {
		p.to.mu.Lock()
		p.to.list = append(p.to.list, handling{p.consumer, h})
		p.to.mu.Unlock()
	}
}

// durables are the durable consumers the replica's pipeline reads.
func (r *replica) durables() []consumers.Durable {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.durs
}

func newReplica(t *testing.T, e *writtest.Env) *replica {
	t.Helper()
	// Over TCP, as a replica in its own process: it reconnects to a server
	// started again on the same port.
	// With the components' creds, as 'writ serve --server' connects.
	cfg := e.Runtime.Config
	copts, err := connect.Creds(cfg.Path(config.ComponentsCreds))
	require.NoError(t, err)
	nc, err := nats.Connect(e.Server.ClientURL(), append(copts, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))...)
	require.NoError(t, err)
	o, err := ops.New(ops.Options{NC: nc, Domain: cfg.Domain, Stream: cfg.Stream.Name, Timers: cfg.Stream.Timers, Interval: interval})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = o.Run(ctx); close(done) }()
	srv := httptest.NewServer(o.Handler()) // 127.0.0.1
	r := &replica{t: t, e: e, nc: nc, ops: o, url: srv.URL, rec: &handlings{Observer: o}}
	t.Cleanup(func() {
		r.halt()
		srv.Close()
		cancel()
		<-done
		nc.Close()
	})
	return r
}

// start builds and runs a pipeline sharing the default durable consumers.
func (r *replica) start() {
	r.t.Helper()
	p, err := pipeline.Build(r.nc, r.e.Runtime, pipeline.Options{Observer: r.rec, Logger: r.e.Logger})
	require.NoError(r.t, err)
	r.ops.Expect(p.Names(), p.Durables())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	r.mu.Lock()
	r.durs = p.Durables()
	r.stop = func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				r.t.Errorf("pipeline: %v", err)
			}
		case <-time.After(30 * time.Second):
			r.t.Errorf("pipeline did not stop within 30s")
		}
	}
	r.mu.Unlock()
}

// halt stops the pipeline, having it finish the messages it holds.
func (r *replica) halt() {
	r.mu.Lock()
	stop := r.stop
	r.stop = nil
	r.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// get returns an endpoint's status code and body.
func (r *replica) get(path string) (int, string) {
	r.t.Helper()
	resp, err := http.Get(r.url + path)
	require.NoError(r.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(r.t, err)
	return resp.StatusCode, string(b)
}

// ready waits until /readyz answers want.
func (r *replica) ready(want int) {
	r.t.Helper()
	var body string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var code int
		if code, body = r.get("/readyz"); code == want {
			return
		}
	}
	r.t.Fatalf("/readyz never answered %d; last: %s", want, body)
}

// metric is the value of one series of reg (a histogram's count).
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func TestEndpointsFollowThePipeline(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	r := newReplica(t, e)

	// No pipeline yet: neither healthy nor ready, and the body says why.
	code, body := r.get("/healthz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "no pipeline")

	r.start()
	r.ready(http.StatusOK)
	code, body = r.get("/healthz")
	require.Equal(t, http.StatusOK, code, body)
	var h ops.Report
	require.NoError(t, json.Unmarshal([]byte(body), &h))
	assert.Equal(t, map[string]string{"policy": "running", "approval": "running", "issuer": "running", "auditor": "running"}, h.Components)
	assert.Equal(t, "consuming", h.Consumers["approval-timers"])

	// One auto-approved request, one waiting for two approvers.
	bot := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	require.Equal(t, request.StatusGranted, e.Settle(bot).State.Status)
	held := e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	e.Pending(held)
	reg := r.ops.Registry()
	require.Eventually(t, func() bool {
		return metric(t, reg, "writ_requests_pending", "domain", "acme") == 1
	}, 10*time.Second, 20*time.Millisecond, "the waiting request is counted")

	assert.Equal(t, 2.0, metric(t, reg, "writ_events_handled_total", "consumer", "policy", "outcome", "acked"))
	assert.Equal(t, 2.0, metric(t, reg, "writ_handle_seconds", "consumer", "policy"))
	assert.Equal(t, 1.0, metric(t, reg, "writ_events_appended_total", "component", "issuer", "kind", "granted"))
	assert.Equal(t, 2.0, metric(t, reg, "writ_events_appended_total", "component", "policy", "kind", "evaluated"))
	assert.Equal(t, 0.0, metric(t, reg, "writ_redeliveries_total", "consumer", "policy"))

	e.Vote("alice", held, true, "")
	e.Vote("bob", held, true, "")
	require.Equal(t, request.StatusGranted, e.Settle(held).State.Status)
	require.Eventually(t, func() bool {
		return metric(t, reg, "writ_requests_pending", "domain", "acme") == 0 &&
			metric(t, reg, "writ_consumer_pending", "consumer", "issuer") == 0 &&
			metric(t, reg, "writ_consumer_ack_pending", "consumer", "issuer") == 0
	}, 10*time.Second, 20*time.Millisecond, "nothing waits once it is granted")

	code, body = r.get("/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, family := range []string{
		`writ_events_handled_total{consumer="approval",outcome="acked"}`,
		`writ_handle_seconds_bucket{consumer="issuer",le="0.005"}`,
		`writ_redeliveries_total{consumer="approval-timers"} 0`,
		`writ_consumer_pending{consumer="policy"} 0`,
		`writ_consumer_ack_pending{consumer="approval"} `, // sampled: a message may be in hand
		`writ_requests_pending{domain="acme"} 0`,
		`writ_events_appended_total{component="approval",kind="approved"} 1`,
		"go_goroutines", "process_start_time_seconds",
	} {
		assert.Contains(t, body, family)
	}

	// Stopped: not ready, and says which components stopped.
	r.halt()
	code, body = r.get("/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "component policy is not running")
	assert.Contains(t, body, "consumer issuer is not being consumed (stopped)")
}

func TestReadinessFollowsNATS(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	u, err := url.Parse(e.Server.ClientURL())
	require.NoError(t, err)
	port, err := strconv.Atoi(u.Port())
	require.NoError(t, err)
	r := newReplica(t, e)
	r.start()
	r.ready(http.StatusOK)

	// NATS goes away: not ready, and says so; still healthy (the process
	// runs, and its consumers will resume).
	e.Server.Shutdown()
	r.ready(http.StatusServiceUnavailable)
	_, body := r.get("/readyz")
	assert.Contains(t, body, "nats: connection")
	code, body := r.get("/healthz")
	assert.Equal(t, http.StatusOK, code, body)

	// Back on the same port and store: ready again, and serving.
	auth, err := e.Runtime.Config.ServerAuth()
	require.NoError(t, err)
	s, err := embedded.Start(embedded.Options{Port: port, StoreDir: e.Store, JetStreamDomain: e.Domain, Name: e.Domain, Auth: auth})
	require.NoError(t, err)
	e.Server = s // shut down at cleanup
	r.ready(http.StatusOK)
	// The requester on a connection of its own: the replica's may not ask.
	copts, err := connect.Creds(e.Runtime.Config.Path("creds/deploy-bot.creds"))
	require.NoError(t, err)
	bot, err := s.Connect(copts...)
	require.NoError(t, err)
	defer bot.Close()
	c, err := client.New(bot, client.Options{Bundle: e.Runtime.Bundle, Home: e.Domain})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id, err := c.Request(ctx, e.Identity("deploy-bot"), client.Spec{Domain: e.Domain, Action: "deploy", Resource: "staging/web"})
	require.NoError(t, err)
	got, err := c.Wait(ctx, e.Domain, id, client.Settled)
	require.NoError(t, err)
	assert.Equal(t, request.StatusGranted, got.State.Status)
}

func TestReportNamesEveryDurable(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	p, err := pipeline.Build(e.NC, e.Runtime, pipeline.Options{})
	require.NoError(t, err)
	var names []string
	for _, d := range p.Durables() {
		names = append(names, d.Name)
		assert.True(t, strings.HasSuffix(d.Consumer, "-acme"), d.Consumer)
	}
	assert.Equal(t, []string{"policy", "approval", "approval-timers", "issuer", "auditor"}, names)
	assert.Equal(t, consumers.DefaultTimersStream, p.Durables()[2].Stream)
}

// Each outcome of handling a message is counted under its own label, as
// dashboards know them; a Handled whose outcome nobody set is counted as
// none of them (not as acked).
func TestHandledCountsByOutcome(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	o, err := ops.New(ops.Options{NC: e.NC, Domain: e.Domain})
	require.NoError(t, err)
	probe := o.Consumer(consumers.Durable{Component: "policy", Name: "policy"}, 1)
	probe.End(0, consumers.Handled{})
	probe.End(0, consumers.Handled{Outcome: consumers.Outcome(200)})
	for i, oc := range consumers.Outcomes {
		for range i + 1 {
			probe.End(0, consumers.Handled{Outcome: oc})
		}
	}
	reg := o.Registry()
	for label, want := range map[string]float64{"acked": 1, "retried": 2, "terminated": 3} {
		assert.Equal(t, want, metric(t, reg, "writ_events_handled_total", "consumer", "policy", "outcome", label), label)
	}
}
