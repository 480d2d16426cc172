package writtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/identity/connect"
	"github.com/writ-dev/writ/internal/access"
	"github.com/writ-dev/writ/internal/embedded"
	"github.com/writ-dev/writ/internal/pipeline"
	"github.com/writ-dev/writ/request"
)

// Domain is the domain of test setups.
const Domain = "acme"

// Options adjust a test installation.
type Options struct {
	Flows    string // flows.json contents replacing the sample
	Policies string // main.cedar contents replacing the sample
	NoServe  bool   // do not start the pipeline
	// MaxEventBytes replaces the configured limit on event bodies.
	MaxEventBytes int
	// Notify is written into the configuration as its notify section
	// (which runs the notifier).
	Notify *config.Notify
	// Audit replaces the configuration's audit section (checkpoint
	// interval, witnessed domains).
	Audit *config.Audit
	// SyncAlways makes the server write every event to disk before
	// acknowledging it, as production does; tests default to batched
	// flushes, for speed.
	SyncAlways bool
}

// Env is a running test installation.
type Env struct {
	T       testing.TB
	Domain  string
	Dir     string
	Store   string
	Server  *embedded.Server
	NC      *nats.Conn
	Runtime *config.Runtime
	Client  *client.Client
	Logger  *slog.Logger

	mu    sync.Mutex
	stops []func()
	sync  bool
}

// Start creates a setup and starts the server, streams and (unless
// o.NoServe) one pipeline.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	e := setup(t, Domain, o)
	e.open()
	e.StartServer()
	if !o.NoServe {
		e.Serve("")
	}
	return e
}

// setup writes a domain's files; open loads them.
func setup(t testing.TB, domain string, o Options) *Env {
	t.Helper()
	dir := t.TempDir()
	_, err := config.Init(dir, domain)
	require.NoError(t, err)
	if o.Flows != "" {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "flows.json"), []byte(o.Flows), 0o644))
	}
	if o.Policies != "" {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "policies", "main.cedar"), []byte(o.Policies), 0o644))
	}
	cfg, err := config.Load(dir)
	require.NoError(t, err)
	if o.MaxEventBytes > 0 {
		cfg.Limits.MaxEventBytes = o.MaxEventBytes
		require.NoError(t, cfg.Save(dir))
	}
	if o.Notify != nil {
		cfg.Notify = o.Notify
		require.NoError(t, cfg.Save(dir))
	}
	if o.Audit != nil {
		cfg.Audit = o.Audit
		require.NoError(t, cfg.Save(dir))
	}
	e := &Env{T: t, Domain: domain, Dir: dir, Store: filepath.Join(dir, "jetstream"), Logger: logger(t), sync: o.SyncAlways}
	t.Cleanup(e.Close)
	return e
}

func (e *Env) open() {
	e.T.Helper()
	cfg, err := config.Load(e.Dir)
	require.NoError(e.T, err)
	rt, err := cfg.Open()
	require.NoError(e.T, err)
	e.Runtime = rt
}

// Federation starts one domain per name, each with its own embedded server
// and JetStream domain, linked by leafnodes to the first (the hub), every
// domain trusting every other. o applies to each domain (policies per
// domain: see FederationOptions).
func Federation(t testing.TB, o map[string]Options, hub string, spokes ...string) map[string]*Env {
	t.Helper()
	return HubOfHubs(t, o, Hub{Domain: hub, Spokes: spokes})
}

// Hub is a hub domain and the spokes it serves.
type Hub struct {
	Domain string
	Spokes []string
}

// HubOfHubs starts the domains of top and of hubs as Federation does, each
// hub's spokes linked to it, and each of hubs linked to top as one of its
// spokes, with leaf creds top issued that carry that hub's spokes too
// (access.Scope.Behind). Every domain trusts every other.
func HubOfHubs(t testing.TB, o map[string]Options, top Hub, hubs ...Hub) map[string]*Env {
	t.Helper()
	all := append([]Hub{top}, hubs...)
	var names []string
	upstream := map[string]string{} // a spoke → its hub
	behind := map[string][]string{} // a hub linked to top → its spokes
	for i, h := range all {
		names = append(names, h.Domain)
		if i > 0 {
			upstream[h.Domain], behind[h.Domain] = top.Domain, h.Spokes
		}
	}
	for _, h := range all {
		names = append(names, h.Spokes...)
		for _, d := range h.Spokes {
			upstream[d] = h.Domain
		}
	}
	envs := map[string]*Env{}
	for _, d := range names {
		envs[d] = setup(t, d, o[d])
	}
	// Everyone trusts everyone: merge the bundles.
	merged := &identity.Bundle{Domains: map[string]*identity.Domain{}}
	for _, d := range names {
		b, err := identity.LoadBundle(filepath.Join(envs[d].Dir, "trust.json"))
		require.NoError(t, err)
		merged.Domains[d] = b.Domains[d]
	}
	fed := map[string]*config.Federation{}
	section := func(d string) *config.Federation {
		if fed[d] == nil {
			fed[d] = &config.Federation{}
		}
		return fed[d]
	}
	for _, d := range names {
		hub, ok := upstream[d]
		if !ok {
			continue
		}
		h := section(hub)
		if h.Listen == "" {
			h.Listen = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		}
		h.Spokes = append(h.Spokes, d)
		// The hub issues each spoke the creds of its leafnode link.
		hubCfg, err := config.Load(envs[hub].Dir)
		require.NoError(t, err)
		hubAccount, err := identity.LoadSeed(hubCfg.Path(config.AccountSeed))
		require.NoError(t, err)
		creds, err := hubCfg.IssueRole(hubAccount, config.RoleSpec{Roles: []access.Role{access.Leaf}, Name: "leaf-" + d, Spoke: d, Behind: behind[d]})
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(envs[d].Dir, "leaf-"+hub+".creds"), creds, 0o600))
		s := section(d)
		s.Remotes, s.Creds = []string{"nats-leaf://" + h.Listen}, "leaf-"+hub+".creds"
	}
	for _, d := range names {
		require.NoError(t, merged.Save(filepath.Join(envs[d].Dir, "trust.json")))
		cfg, err := config.Load(envs[d].Dir)
		require.NoError(t, err)
		cfg.Federation = fed[d]
		require.NoError(t, cfg.Save(envs[d].Dir))
		envs[d].open()
	}
	for _, d := range names {
		envs[d].StartServer()
		if !o[d].NoServe {
			envs[d].Serve("")
		}
	}
	return envs
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func logger(t testing.TB) *slog.Logger {
	if os.Getenv("WRIT_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// StartServer starts (or restarts) the embedded server on the same store.
func (e *Env) StartServer() {
	t := e.T
	t.Helper()
	leaf, err := e.Runtime.Leaf()
	require.NoError(t, err)
	auth, err := e.Runtime.Config.ServerAuth()
	require.NoError(t, err)
	s, err := embedded.Start(embedded.Options{Port: -1, StoreDir: e.Store, JetStreamDomain: e.Domain, Leaf: leaf, Name: e.Domain, SyncAlways: e.sync, Auth: auth})
	require.NoError(t, err)
	// The test's own connection is the operator's: tests tamper with what
	// no other role may touch. The pipeline's components connect with
	// their own roles (Serve).
	opts, err := connect.Creds(e.Runtime.Config.Path(config.OperatorCreds))
	require.NoError(t, err)
	nc, err := s.Connect(append(opts, nats.MaxReconnects(-1))...)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, pipeline.Ensure(ctx, nc, e.Runtime))
	c, err := client.New(nc, client.Options{Bundle: e.Runtime.Bundle, MaxBody: e.Runtime.Config.Limits.MaxEventBytes, Home: e.Domain})
	require.NoError(t, err)
	e.Server, e.NC, e.Client = s, nc, c
}

// Serve starts a pipeline; suffix "" shares the default durable consumers,
// another suffix gives the pipeline its own copy of every message. It
// returns a function that stops the pipeline and waits for it.
func (e *Env) Serve(suffix string) func() {
	e.T.Helper()
	return e.serve(suffix, nil)
}

// ServeOnly starts a pipeline of the named components alone (on the
// default durable consumers); stopped as Serve's is.
func (e *Env) ServeOnly(components ...string) func() {
	e.T.Helper()
	return e.serve("", components)
}

func (e *Env) serve(suffix string, components []string) func() {
	t := e.T
	t.Helper()
	connect, err := pipeline.RoleConnector(e.Runtime, suffix, e.Logger, e.Server.Connect)
	require.NoError(t, err)
	p, err := pipeline.Build(e.NC, e.Runtime, pipeline.Options{Logger: e.Logger, DurableSuffix: suffix, Components: components, Connect: connect})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("pipeline: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("pipeline did not stop within 30s")
			}
		})
	}
	e.mu.Lock()
	e.stops = append(e.stops, stop)
	e.mu.Unlock()
	e.awaitNotifier(p)
	return stop
}

// awaitNotifier waits until a pipeline's notifier has taken its place in
// the audit stream: it notifies only what is stored after it first starts,
// so a test's first request must come after that.
func (e *Env) awaitNotifier(p *pipeline.Pipeline) {
	t := e.T
	t.Helper()
	if !slices.Contains(p.Names(), pipeline.Notifier) {
		return
	}
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	for _, d := range p.Durables() {
		if d.Component != pipeline.Notifier || d.Name != "notifier" { // its audit stream's, not its queue's
			continue
		}
		require.Eventually(t, func() bool {
			_, err := js.Consumer(context.Background(), d.Stream, d.Consumer)
			return err == nil
		}, 10*time.Second, 5*time.Millisecond, "the notifier did not start within 10s")
	}
}

// StopAll stops every pipeline and then the server.
func (e *Env) StopAll() {
	e.mu.Lock()
	stops := e.stops
	e.stops = nil
	e.mu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
	if e.NC != nil {
		e.NC.Close()
		e.NC = nil
	}
	if e.Server != nil {
		e.Server.Shutdown()
		e.Server = nil
	}
}

// Close is StopAll, for t.Cleanup.
func (e *Env) Close() { e.StopAll() }

// Identity loads a sample identity's creds.
func (e *Env) Identity(name string) *identity.Identity {
	e.T.Helper()
	id, err := identity.LoadCreds(filepath.Join(e.Dir, config.PrincipalCreds(name)))
	require.NoError(e.T, err)
	return id
}

// Request submits a request as name for the test domain.
func (e *Env) Request(name string, s client.Spec) string {
	e.T.Helper()
	if s.Domain == "" {
		s.Domain = e.Domain
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := e.Client.Request(ctx, e.Identity(name), s)
	require.NoError(e.T, err)
	return id
}

// Await waits until done holds for the request, or fails the test after timeout.
func (e *Env) Await(id string, timeout time.Duration, done func(request.State) bool) *client.Request {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r, err := e.Client.Wait(ctx, e.Domain, id, done)
	if err != nil {
		status := "no history"
		if r != nil {
			status = r.State.Status.String()
		}
		require.NoError(e.T, err, "request %s still %s", id, status)
	}
	return r
}

// AwaitAsk waits until the approval component answers an ask with an id
// of its own (a lock, a state change): applied, or refused. It fails the
// test after timeout.
func (e *Env) AwaitAsk(id string, timeout time.Duration) *client.Request {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r, err := e.Client.AwaitAsk(ctx, e.Domain, id)
	require.NoError(e.T, err, "ask %s not answered", id)
	return r
}

// Settle waits until the request is settled.
func (e *Env) Settle(id string) *client.Request {
	e.T.Helper()
	return e.Await(id, 20*time.Second, client.Settled)
}

// Pending waits until the request waits for approvers.
func (e *Env) Pending(id string) *client.Request {
	e.T.Helper()
	return e.Await(id, 20*time.Second, func(s request.State) bool {
		return s.Status != request.StatusRequested && s.Status != request.StatusNone
	})
}

// Vote answers a request as name and, as writ approve does, waits for the
// pipeline's answer to the vote (counted, refused, or the decision it
// made), so that a test's next step finds it in the history.
func (e *Env) Vote(name, id string, approve bool, reason string) uint64 {
	e.T.Helper()
	seq := e.Cast(name, id, approve, reason)
	e.Await(id, 10*time.Second, func(s request.State) bool { return s.VoteAnswered(seq) })
	return seq
}

// Cast answers a request as name and returns at once: the pipeline may
// not be running.
func (e *Env) Cast(name, id string, approve bool, reason string) uint64 {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seq, err := e.Client.Vote(ctx, e.Identity(name), e.Domain, id, client.Vote{Approve: approve, Reason: reason})
	require.NoError(e.T, err)
	return seq
}

// Kinds lists the kinds of a request's history, in order, but those of
// skip. (Where votes race, whether the first is counted before the second
// is stored is a matter of timing: such tests skip events.KindCounted.)
func Kinds(r *client.Request, skip ...events.Kind) []string {
	out := make([]string, 0, len(r.Records))
	for _, rec := range r.Records {
		if !slices.Contains(skip, rec.Kind) {
			out = append(out, rec.Kind.String())
		}
	}
	return out
}

// AssertOneEnd checks that a request's history holds exactly one terminal
// event, one evaluation and one approval at most, and, granted, exactly
// one evaluation and one grant.
func AssertOneEnd(t testing.TB, r *client.Request) {
	t.Helper()
	n := map[events.Kind]int{}
	ends := 0
	for _, rec := range r.Records {
		n[rec.Kind]++
		switch rec.Kind {
		case events.KindRejected, events.KindGranted, events.KindDenied, events.KindExpired:
			ends++
		case events.KindEvaluated:
			if ev, ok := rec.Data.(*events.Evaluated); ok && ev.Outcome == events.OutcomeDeny {
				ends++
			}
		}
	}
	kinds := Kinds(r)
	assert.Equal(t, 1, ends, "request %s: exactly one end: %v", r.State.ID, kinds)
	assert.LessOrEqual(t, n[events.KindEvaluated], 1, "request %s: %v", r.State.ID, kinds)
	assert.LessOrEqual(t, n[events.KindApproved], 1, "request %s: %v", r.State.ID, kinds)
	if r.State.Status == request.StatusGranted {
		assert.Equal(t, 1, n[events.KindEvaluated], "request %s: %v", r.State.ID, kinds)
		assert.Equal(t, 1, n[events.KindGranted], "request %s: %v", r.State.ID, kinds)
	}
}
