package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/locks"
	"github.com/writ-dev/writ/internal/ops"
	"github.com/writ-dev/writ/internal/pipeline"
	"github.com/writ-dev/writ/internal/state"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/redeem"
	"github.com/writ-dev/writ/request"
)

// guarded is a test installation whose pipeline runs with operations
// endpoints, as `writ serve --http` does: each component, and the guard,
// on a connection of its own role; e.NC is a connection with full rights,
// the operator's, which the tests weaken things with.
type guarded struct {
	t     *testing.T
	e     *writtest.Env
	js    jetstream.JetStream
	guard *consumers.Guard
	url   string // operations endpoints
	logs  *errorLog
}

func startGuarded(t *testing.T, cfg consumers.GuardConfig) *guarded {
	t.Helper()
	e := writtest.Start(t, writtest.Options{NoServe: true})
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	logs := &errorLog{}
	log := slog.New(logs)
	rc := e.Runtime.Config
	o, err := ops.New(ops.Options{NC: e.NC, Domain: rc.Domain, Stream: rc.Stream.Name, Timers: rc.Stream.Timers, Interval: 100 * time.Millisecond, Logger: log})
	require.NoError(t, err)
	connect, err := pipeline.RoleConnector(e.Runtime, "", log, e.Server.Connect)
	require.NoError(t, err)
	p, err := pipeline.Build(e.NC, e.Runtime, pipeline.Options{Logger: log, Observer: o, Guard: cfg, Connect: connect})
	require.NoError(t, err)
	require.NotNil(t, p.Guard())
	o.Expect(p.Names(), p.Durables())
	o.Guard(p.Guard())
	srv := httptest.NewServer(o.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = o.Run(ctx) }()
	go func() {
		defer wg.Done()
		if err := p.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("pipeline: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		srv.Close()
		// The role's permissions are enough for what the guard does (a
		// refusal is logged by pipeline.ErrorLogger).
		for _, line := range logs.all() {
			if strings.Contains(line, "NATS server reported an error") {
				for _, what := range []string{"$JS.EVENT.ADVISORY", ".INFO.", ".alerted"} {
					assert.NotContains(t, line, what, "the guard's role lacks a permission it needs")
				}
			}
		}
	})
	g := &guarded{t: t, e: e, js: js, guard: p.Guard(), url: srv.URL, logs: logs}
	g.waitOpen(10 * time.Second)
	return g
}

// waitOpen waits until the guard is open.
func (g *guarded) waitOpen(within time.Duration) consumers.GuardStatus {
	g.t.Helper()
	var s consumers.GuardStatus
	require.Eventually(g.t, func() bool { s = g.guard.Status(); return s.Open }, within, 10*time.Millisecond,
		"the guard stays shut: %+v", g.guard.Status())
	return s
}

// waitShut waits until the guard is shut.
func (g *guarded) waitShut(within time.Duration) consumers.GuardStatus {
	g.t.Helper()
	var s consumers.GuardStatus
	require.Eventually(g.t, func() bool { s = g.guard.Status(); return !s.Open }, within, 5*time.Millisecond,
		"the guard did not notice")
	return s
}

// ready fetches /readyz.
func (g *guarded) ready() (int, ops.Report) {
	g.t.Helper()
	resp, err := http.Get(g.url + "/readyz")
	require.NoError(g.t, err)
	defer resp.Body.Close()
	var r ops.Report
	require.NoError(g.t, json.NewDecoder(resp.Body).Decode(&r))
	return resp.StatusCode, r
}

// guardHistory is the guard's alerts in the trail.
func (g *guarded) guardHistory() *client.Request {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := g.e.Client.Load(ctx, g.e.Domain, events.GuardID(g.e.Domain))
	if errors.Is(err, client.ErrNotFound) {
		return &client.Request{}
	}
	require.NoError(g.t, err)
	require.Empty(g.t, r.Errs, "the guard's history folds")
	return r
}

// alerts are the guard's alerts recorded after sequence after.
func (g *guarded) alerts(after uint64) []events.Record {
	var out []events.Record
	for _, r := range g.guardHistory().Records {
		if r.Seq > after {
			out = append(out, r)
		}
	}
	return out
}

// grantsAfter lists the sequences of the granted events after seq.
func (g *guarded) grantsAfter(seq uint64) []uint64 {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := g.e.Client.Reader(g.e.Domain).Load(ctx, events.Prefix+"."+g.e.Domain+".*."+events.KindGranted.String(), seq+1)
	require.NoError(g.t, err)
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

// load submits requests that policy allows at once, one every few
// milliseconds, until stopped: at most max, for at most a minute.
type load struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	ids  []string
}

func startLoad(t *testing.T, e *writtest.Env, max int) *load {
	l := &load{stop: make(chan struct{}), done: make(chan struct{})}
	bot := e.Identity("deploy-bot")
	go func() {
		defer close(l.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		end := time.After(time.Minute)
		for range max {
			select {
			case <-l.stop:
				return
			case <-end:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			id, err := e.Client.Request(ctx, bot, client.Spec{Domain: e.Domain, Action: "deploy", Resource: "staging/web"})
			cancel()
			if err == nil {
				l.mu.Lock()
				l.ids = append(l.ids, id)
				l.mu.Unlock()
			}
		}
	}()
	t.Cleanup(l.halt)
	return l
}

func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

func (l *load) submitted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ids)
}

// weakening is a change an operator with full rights makes, and how to
// set it back.
type weakening struct {
	name string
	// problem is what the guard must say (readiness, alert).
	problem string
	// stalls says the change stops requests from being decided (the
	// policy component's consumer): the requests made meanwhile wait.
	stalls  bool
	weaken  func(t *testing.T, js jetstream.JetStream)
	restore func(t *testing.T, js jetstream.JetStream)
}

// editStream changes a stream's configuration; the returned function puts
// the configuration it had back.
func editStream(name string, edit func(*jetstream.StreamConfig)) (weaken, restore func(*testing.T, jetstream.JetStream)) {
	var before jetstream.StreamConfig
	weaken = func(t *testing.T, js jetstream.JetStream) {
		ctx := t.Context()
		s, err := js.Stream(ctx, name)
		require.NoError(t, err)
		before = s.CachedInfo().Config
		c := before
		edit(&c)
		_, err = js.UpdateStream(ctx, c)
		require.NoError(t, err, "the server must accept the change for the test to mean anything")
	}
	restore = func(t *testing.T, js jetstream.JetStream) {
		_, err := js.UpdateStream(t.Context(), before)
		require.NoError(t, err)
	}
	return weaken, restore
}

// editConsumer changes a durable consumer's configuration, and puts it back.
func editConsumer(stream, name string, edit func(*jetstream.ConsumerConfig)) (weaken, restore func(*testing.T, jetstream.JetStream)) {
	var before jetstream.ConsumerConfig
	weaken = func(t *testing.T, js jetstream.JetStream) {
		ctx := t.Context()
		c, err := js.Consumer(ctx, stream, name)
		require.NoError(t, err)
		before = c.CachedInfo().Config
		cfg := before
		edit(&cfg)
		_, err = js.UpdateConsumer(ctx, stream, cfg)
		require.NoError(t, err, "the server must accept the change for the test to mean anything")
	}
	restore = func(t *testing.T, js jetstream.JetStream) {
		_, err := js.UpdateConsumer(t.Context(), stream, before)
		require.NoError(t, err)
	}
	return weaken, restore
}

func streamCase(name, stream, problem string, edit func(*jetstream.StreamConfig)) weakening {
	w, r := editStream(stream, edit)
	return weakening{name: name, problem: problem, weaken: w, restore: r}
}

func stalling(w weakening) weakening { w.stalls = true; return w }

func consumerCase(name, stream, consumer, problem string, edit func(*jetstream.ConsumerConfig)) weakening {
	w, r := editConsumer(stream, consumer, edit)
	return weakening{name: name, problem: problem, weaken: w, restore: r}
}

// reversible are weakenings that lose nothing the test needs and can be
// set back.
func reversible() []weakening {
	const audit, timers = consumers.DefaultStream, consumers.DefaultTimersStream
	issuer, policy, approval := consumers.DurableIssuer+writtest.Domain, consumers.DurablePolicy+writtest.Domain, consumers.DurableApproval+writtest.Domain
	return []weakening{
		streamCase("audit max messages", audit, "stream WRIT: max messages is 1000000, want unlimited",
			func(c *jetstream.StreamConfig) { c.MaxMsgs = 1_000_000 }),
		streamCase("audit max bytes", audit, "stream WRIT: max bytes is 1073741824, want unlimited",
			func(c *jetstream.StreamConfig) { c.MaxBytes = 1 << 30 }),
		streamCase("audit max age", audit, "stream WRIT: max age is 48h0m0s, want unlimited",
			func(c *jetstream.StreamConfig) { c.MaxAge = 48 * time.Hour }),
		streamCase("audit max per subject", audit, "stream WRIT: max messages per subject is 100, want unlimited",
			func(c *jetstream.StreamConfig) { c.MaxMsgsPerSubject = 100 }),
		streamCase("audit max message size", audit, "stream WRIT: max message size is 65536, want 1048576",
			func(c *jetstream.StreamConfig) { c.MaxMsgSize = 64 << 10 }),
		streamCase("audit discard old", audit, "stream WRIT: discard policy is DiscardOld, want new",
			func(c *jetstream.StreamConfig) { c.Discard = jetstream.DiscardOld }),
		streamCase("audit duplicate window", audit, "stream WRIT: duplicate window is 1s, want 24h0m0s or more",
			func(c *jetstream.StreamConfig) { c.Duplicates = time.Second }),
		streamCase("audit subjects", audit, "stream WRIT: subjects are",
			func(c *jetstream.StreamConfig) { c.Subjects = append(slices.Clone(c.Subjects), "elsewhere.>") }),
		streamCase("timers max age", timers, "stream WRIT_TIMERS: max age is 48h0m0s, want unlimited",
			func(c *jetstream.StreamConfig) { c.MaxAge = 48 * time.Hour }),
		streamCase("used grants TTL", "KV_"+redeem.BucketUsed, "bucket writ-grants-used: max age is 1h0m0s, want",
			func(c *jetstream.StreamConfig) { c.MaxAge = time.Hour }),
		streamCase("nonces TTL", "KV_"+redeem.BucketNonces, "bucket writ-redeem-nonces: max age is 1s, want",
			func(c *jetstream.StreamConfig) { c.MaxAge, c.Duplicates = time.Second, time.Second }),
		streamCase("state history", "KV_"+state.Bucket, "bucket writ-resource-state: max messages per subject is 1, want 5",
			func(c *jetstream.StreamConfig) { c.MaxMsgsPerSubject = 1 }),
		streamCase("locks discard old", "KV_"+locks.Bucket, "bucket writ-locks: discard policy is DiscardOld, want new",
			func(c *jetstream.StreamConfig) { c.Discard = jetstream.DiscardOld }),
		consumerCase("issuer max deliver", audit, issuer, "consumer writ-issuer-acme: max deliveries is 5, want 1000",
			func(c *jetstream.ConsumerConfig) { c.MaxDeliver = 5 }),
		stalling(consumerCase("policy filter", audit, policy, "consumer writ-policy-acme: filters are",
			func(c *jetstream.ConsumerConfig) { c.FilterSubjects = []string{"writ.acme.*.voted"} })),
		consumerCase("approval filter dropped", audit, approval, "consumer writ-approval-acme: filters are",
			func(c *jetstream.ConsumerConfig) { c.FilterSubjects = c.FilterSubjects[:1] }),
		{
			name: "issuer paused", problem: "consumer writ-issuer-acme: it is paused until",
			weaken: func(t *testing.T, js jetstream.JetStream) {
				_, err := js.PauseConsumer(t.Context(), audit, issuer, time.Now().Add(10*time.Minute))
				require.NoError(t, err)
			},
			restore: func(t *testing.T, js jetstream.JetStream) {
				_, err := js.ResumeConsumer(t.Context(), audit, issuer)
				require.NoError(t, err)
			},
		},
	}
}

// TestGuardStopsIssuance changes, with full rights and under load, each
// setting Writ relies on in turn: the guard notices (advisories), no grant
// is appended after the barrier it took when it shut until the trail
// records it restored, readiness says why, the trail records an alert
// that says what changed; set back, issuance resumes and the requests
// held meanwhile are granted.
func TestGuardStopsIssuance(t *testing.T) {
	g := startGuarded(t, consumers.GuardConfig{})
	var took []string
	for _, w := range reversible() {
		t.Run(w.name, func(t *testing.T) {
			g.t = t
			took = append(took, fmt.Sprintf("%s: %s", w.name, g.exercise(w, true)))
		})
	}
	t.Logf("noticed after:\n  %s", strings.Join(took, "\n  "))
}

// exercise weakens, checks that issuance stops, restores, checks that it
// resumes. It returns how long noticing took, and how.
func (g *guarded) exercise(w weakening, alert bool) string {
	t, e := g.t, g.e
	l := startLoad(t, e, 400)
	// Issuance flows before the change.
	require.Eventually(t, func() bool { return l.submitted() >= 3 }, 10*time.Second, 5*time.Millisecond)
	l.mu.Lock()
	first := l.ids[0]
	l.mu.Unlock()
	require.Equal(t, request.StatusGranted, e.Settle(first).State.Status)
	before := g.guardHistory().State.LastSeq

	changed := time.Now()
	w.weaken(t, g.js)
	s := g.waitShut(10 * time.Second)
	noticed := s.Since.Sub(changed)
	assert.Contains(t, strings.Join(s.Weakened, "\n"), w.problem)

	code, rep := g.ready()
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, strings.Join(rep.Problems, "\n"), "issuance stopped: "+w.problem)
	assert.True(t, g.logs.has(w.problem), "an error log line says what changed")
	if alert {
		var got []events.Record
		require.Eventually(t, func() bool { got = g.alerts(before); return len(got) > 0 }, 10*time.Second, 10*time.Millisecond,
			"an alert is recorded")
		a := got[0].Data.(*events.Alerted)
		assert.Equal(t, events.AlertWeakened, a.Alert)
		assert.Contains(t, a.Reason, w.problem)
		assert.Greater(t, got[0].Seq, s.Barrier)
	}

	// Requests keep coming and are decided; none is granted.
	var held []string
	if !w.stalls {
		held = []string{
			e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/api"}),
			e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"}),
		}
	}
	for _, id := range held {
		r := e.Await(id, 20*time.Second, func(s request.State) bool {
			return s.Status != request.StatusRequested && s.Status != request.StatusNone
		})
		assert.Equal(t, request.StatusAllowed, r.State.Status, "decided, not granted")
	}
	l.halt()

	w.restore(t, g.js)
	g.waitOpen(10 * time.Second)
	var restoredAt uint64
	if alert {
		got := g.alerts(before)
		require.NotEmpty(t, got)
		last := got[len(got)-1]
		require.Equal(t, events.AlertRestored, last.Data.(*events.Alerted).Alert, "the trail says restored")
		restoredAt = last.Seq
		// The barrier: no grant between the moment the guard shut and the
		// record that it opened again.
		for _, seq := range g.grantsAfter(s.Barrier) {
			assert.Greater(t, seq, restoredAt, "a grant was appended at %d, while the guard was shut (barrier %d)", seq, s.Barrier)
		}
	}
	for _, id := range held {
		assert.Equal(t, request.StatusGranted, e.Settle(id).State.Status, "held, then granted")
	}
	// Readiness comes back.
	require.Eventually(t, func() bool { code, _ := g.ready(); return code == http.StatusOK }, 10*time.Second, 20*time.Millisecond)
	return fmt.Sprintf("%s via %s", noticed.Round(time.Millisecond), s.Noticed)
}

// errorLog keeps the error lines logged, with their attributes.
type errorLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *errorLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *errorLog) Handle(_ context.Context, r slog.Record) error {
	if r.Level < slog.LevelError {
		return nil
	}
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	l.mu.Lock()
	l.lines = append(l.lines, b.String())
	l.mu.Unlock()
	return nil
}
func (l *errorLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *errorLog) WithGroup(string) slog.Handler      { return l }

func (l *errorLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

func (l *errorLog) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// TestGuardNoticesRemovals: a durable consumer, the timer stream or a bucket
// deleted with full rights is noticed from the advisories (the read-back may
// find it made again already: the consumer loop, a watcher re-creates it),
// recorded with who did it, and issuance resumes once it is back as Writ
// needs it. Each case has an installation of its own.
func TestGuardNoticesRemovals(t *testing.T) {
	ensure := func(t *testing.T, g *guarded) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		require.NoError(t, pipeline.Ensure(ctx, g.e.NC, g.e.Runtime))
	}
	// A removal reads "it was deleted" when its advisory is read first,
	// and "it is missing" when a read-back another advisory started (a
	// client's API call) finds the gap first: both name what is gone.
	cases := []weakening{
		{
			name: "policy consumer deleted", problem: "consumer writ-policy-acme: it ",
			weaken: func(t *testing.T, js jetstream.JetStream) {
				require.NoError(t, js.DeleteConsumer(t.Context(), consumers.DefaultStream, consumers.DurablePolicy+writtest.Domain))
			},
			restore: func(*testing.T, jetstream.JetStream) {}, // the policy component makes it again
		},
		{
			name: "timer stream deleted", problem: "stream WRIT_TIMERS: it ",
			weaken: func(t *testing.T, js jetstream.JetStream) {
				require.NoError(t, js.DeleteStream(t.Context(), consumers.DefaultTimersStream))
			},
		},
		{
			name: "used grants bucket deleted", problem: "bucket writ-grants-used: it ",
			weaken: func(t *testing.T, js jetstream.JetStream) {
				require.NoError(t, js.DeleteKeyValue(t.Context(), redeem.BucketUsed))
			},
		},
	}
	for _, w := range cases {
		t.Run(w.name, func(t *testing.T) {
			g := startGuarded(t, consumers.GuardConfig{})
			if w.restore == nil {
				w.restore = func(t *testing.T, _ jetstream.JetStream) { ensure(t, g) }
			}
			t.Logf("noticed after %s", g.exercise(w, true))
		})
	}
}

// TestGuardWhenTheTrailIsGone: the audit stream deleted, sealed, or made to
// drop what was acknowledged. The guard notices and stops issuance;
// readiness and an error log line say why, the only record when the trail
// cannot take the alert.
func TestGuardWhenTheTrailIsGone(t *testing.T) {
	cases := []struct {
		weakening
		// back puts the trail right again, if anything can.
		back func(t *testing.T, g *guarded)
	}{
		{weakening: weakening{name: "audit stream deleted", problem: "stream WRIT: it is missing",
			weaken: func(t *testing.T, js jetstream.JetStream) {
				require.NoError(t, js.DeleteStream(t.Context(), consumers.DefaultStream))
			}},
			back: func(t *testing.T, g *guarded) {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				require.NoError(t, pipeline.Ensure(ctx, g.e.NC, g.e.Runtime))
			}},
		{weakening: streamCase("audit stream sealed", consumers.DefaultStream, "stream WRIT: it is sealed",
			func(c *jetstream.StreamConfig) { c.Sealed = true })},
		{weakening: streamCase("audit retention interest", consumers.DefaultStream, "stream WRIT: retention is Interest, want Limits",
			func(c *jetstream.StreamConfig) { c.Retention = jetstream.InterestPolicy })},
		{weakening: streamCase("audit per-message TTL", consumers.DefaultStream, "stream WRIT: per-message TTLs are allowed",
			func(c *jetstream.StreamConfig) { c.AllowMsgTTL = true })},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := startGuarded(t, consumers.GuardConfig{})
			l := startLoad(t, g.e, 200)
			require.Eventually(t, func() bool { return l.submitted() >= 3 }, 10*time.Second, 5*time.Millisecond)
			changed := time.Now()
			c.weaken(t, g.js)
			// Shutting waits for the grants in hand to finish (nothing
			// lands after the barrier), and with the trail gone their
			// reads and appends run into their time limits: seen taking
			// over 10 s under a loaded race run.
			s := g.waitShut(30 * time.Second)
			t.Logf("noticed after %s via %s", s.Since.Sub(changed).Round(time.Millisecond), s.Noticed)
			assert.Contains(t, strings.Join(s.Weakened, "\n"), c.problem)
			code, rep := g.ready()
			assert.Equal(t, http.StatusServiceUnavailable, code)
			assert.Contains(t, strings.Join(rep.Problems, "\n"), "issuance stopped: "+c.problem)
			require.Eventually(t, func() bool { return g.logs.has(c.problem) }, 5*time.Second, 10*time.Millisecond,
				"an error log line says what changed")
			l.halt()
			if c.back == nil {
				return
			}
			c.back(t, g)
			g.waitOpen(10 * time.Second)
		})
	}
}

// TestGuardReadBack: without the advisories, the read-back alone notices
// within an interval, and notices that the change was set back.
func TestGuardReadBack(t *testing.T) {
	g := startGuarded(t, consumers.GuardConfig{ReadBackOnly: true})
	var took []string
	for _, w := range reversible() {
		if w.name != "audit max age" && w.name != "issuer paused" && w.name != "used grants TTL" {
			continue
		}
		t.Run(w.name, func(t *testing.T) {
			g.t = t
			took = append(took, fmt.Sprintf("%s: %s", w.name, g.exercise(w, true)))
			assert.Equal(t, "read-back", g.guard.Status().Noticed)
		})
	}
	t.Logf("noticed after (read-back every %s):\n  %s", consumers.DefaultGuardInterval, strings.Join(took, "\n  "))
}

// A guard that hears the advisories reads back only every Quiet while it
// is open: every change through the JetStream API is told by one, and
// wakes it at once (TestGuardStopsIssuance). One that cannot tell that they
// reach it reads back every Interval. Counted in rounds, over the same
// second, on the same setup.
func TestGuardReadsBackQuietlyWhileItHearsAdvisories(t *testing.T) {
	rounds := func(cfg consumers.GuardConfig) uint64 {
		g := startGuarded(t, cfg)
		g.waitOpen(10 * time.Second)
		// Past the first rounds, which cannot yet have heard their own
		// requests told.
		require.Eventually(t, func() bool { return g.guard.Status().Rounds >= 2 },
			10*time.Second, 10*time.Millisecond)
		time.Sleep(300 * time.Millisecond)
		from := g.guard.Status().Rounds
		time.Sleep(time.Second)
		return g.guard.Status().Rounds - from
	}
	quiet := rounds(consumers.GuardConfig{Interval: 50 * time.Millisecond, Quiet: time.Hour})
	busy := rounds(consumers.GuardConfig{Interval: 50 * time.Millisecond, Quiet: time.Hour, ReadBackOnly: true})
	assert.Zero(t, quiet, "rounds in a second, hearing the advisories")
	assert.GreaterOrEqual(t, busy, uint64(5), "rounds in a second, reading back only")
}
