package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/locks"
	"github.com/writ-dev/writ/internal/state"
	"github.com/writ-dev/writ/redeem"
)

// DefaultGuardInterval is how often a Guard reads back what it watches
// while it cannot tell that the advisories reach it, and while it is shut;
// DefaultGuardQuietInterval how often while they do and it is open.
const (
	DefaultGuardInterval      = 2 * time.Second
	DefaultGuardQuietInterval = 30 * time.Second
)

// GuardConfig adjusts a Guard.
type GuardConfig struct {
	// Interval between read-backs; default DefaultGuardInterval.
	Interval time.Duration
	// Quiet is the interval between read-backs while the guard is open and
	// hears the advisories (every change made through the JetStream API is
	// told by one, and starts a read-back at once); default
	// DefaultGuardQuietInterval. Each read-back's own API requests come
	// back as API audits: a round that hears none of the previous round's
	// falls back to Interval.
	Quiet time.Duration
	// ReadBackOnly does without the JetStream advisories: for tests of the
	// read-back alone. (A NATS whose permissions refuse the advisory
	// subscription gives the same: the read-back still notices, within
	// an interval.)
	ReadBackOnly bool
}

// Guard watches, for as long as the pipeline runs, what Writ relies on:
// the audit stream, the timer stream, every KV bucket Writ uses and the
// durable consumers the components read. Anyone with full rights on the
// NATS server (an operator, break-glass) can still weaken them: lower a
// limit, change retention or discard, seal a stream, pause or delete a
// consumer. The guard notices within seconds, from the JetStream
// advisories (a change is followed by a read-back at once) and from a
// read-back every interval (which also catches what no advisory told).
//
// While anything is weakened the guard is shut: the issuer mints nothing
// (it handles each message under hold) and its consumer loop takes no
// message (Open is the loop's gate), so that held
// requests are granted once the guard opens again; readiness reports why
// (Weakened); an alerted event (AlertWeakened, under events.GuardID) says
// what changed, signed by the approval key when the guard has it, and a
// log line at error level says it in any case (the only trace when the
// trail itself is gone). It opens again only when a read-back finds
// everything right: at least as strong as Writ asks for (CheckStream,
// CheckConsumer), whoever put it back; an AlertRestored event is recorded
// before the first grant.
//
// The guard starts shut and opens after its first read-back finds
// everything right. A read-back that cannot tell (NATS unreachable, an
// API request unanswered) keeps the verdict it had.
type Guard struct {
	env     Env
	js      jetstream.JetStream
	log     *slog.Logger
	cfg     GuardConfig
	signer  *component // records alerts; nil: they are logged only
	streams []watched
	kick    chan string // read back now, and why

	// gate is held for reading while the issuer handles a message, and
	// for writing to shut: once shut returns, no grant is being appended.
	gate sync.RWMutex
	shut bool // under gate

	heard atomic.Int64 // when an API audit advisory was last heard (Unix ns)

	mu       sync.Mutex
	durables []Durable
	seen     map[string]bool   // durable consumers found on the server since start
	noticed  map[string]string // what advisories told that a read-back cannot see (a deletion), by key, for the next round
	keys     []string          // of what is weakened: a problem's text, or a notice's key
	status   GuardStatus
	open     chan struct{} // closed while open
}

// watched is a stream the guard holds to a configuration.
type watched struct {
	what string // how problems name it: "stream WRIT", "bucket writ-locks"
	want jetstream.StreamConfig
}

// GuardStatus is what a Guard found.
type GuardStatus struct {
	// Weakened lists what is wrong; empty while the guard is open (or,
	// with Checked zero, before its first read-back).
	Weakened []string
	Open     bool
	// Since is when the guard shut, last; Barrier the audit stream's last
	// sequence just after: no grant is appended after it until the guard
	// opens again. Noticed says how: "read-back", or the advisory.
	Since   time.Time
	Barrier uint64
	Noticed string
	Rounds  uint64    // read-backs done
	Checked time.Time // when the last read-back ended
}

// NewGuard returns a guard of what env's pipeline relies on. key, when
// given, signs the alerts: it must be the approval key of the served domain
// (events.RoleFor(events.KindAlerted)).
func NewGuard(env Env, key nkeys.KeyPair, cfg GuardConfig) (*Guard, error) {
	if err := env.Validate(); err != nil {
		return nil, fmt.Errorf("consumers: guard: %w", err)
	}
	env = env.withDefaults()
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultGuardInterval
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = DefaultGuardQuietInterval
	}
	js, err := jetstream.New(env.NC)
	if err != nil {
		return nil, err
	}
	g := &Guard{
		env: env, js: js, cfg: cfg,
		log:     env.Logger.With("component", "guard", attrDomain, env.Domain),
		kick:    make(chan string, 1),
		seen:    map[string]bool{},
		noticed: map[string]string{},
		shut:    true,
		open:    make(chan struct{}),
	}
	if key != nil {
		if g.signer, err = newComponent(env, events.RoleFor(events.KindAlerted), key); err != nil {
			return nil, err
		}
	}
	s := env.Streams
	// The server allows rollups on a stream that allows schedules: what
	// the timer stream is created with (EnsureStreams) is that.
	timers := TimersStreamConfig(s)
	timers.AllowRollup = true
	g.streams = []watched{
		{"stream " + s.Name, AuditStreamConfig(s)},
		{"stream " + s.Timers, timers},
	}
	buckets := append([]jetstream.KeyValueConfig{locks.BucketConfig(s.Replicas), state.BucketConfig(s.Replicas)},
		redeem.BucketConfigs(s.Replicas)...)
	for _, b := range buckets {
		g.streams = append(g.streams, watched{"bucket " + b.Bucket, BucketStreamConfig(b)})
	}
	return g, nil
}

// Expect names the durable consumers to watch (pipeline.Pipeline's
// Durables). One not found is a problem only once it has been seen: a
// component creates its own when it starts.
func (g *Guard) Expect(durables []Durable) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.durables = slices.Clone(durables)
}

// Status says what the guard found last.
func (g *Guard) Status() GuardStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.status
	s.Weakened = slices.Clone(s.Weakened)
	return s
}

// Weakened lists what stops issuance, for readiness: nil while open.
func (g *Guard) Weakened() []string {
	s := g.Status()
	switch {
	case s.Open:
		return nil
	case len(s.Weakened) == 0:
		// Starting, and no read-back has told everything yet.
		return []string{"the guard has not yet read back every stream, bucket and consumer Writ relies on"}
	}
	return s.Weakened
}

// Open returns a channel closed while the guard is open: a consumer loop
// waits on it before it pulls.
func (g *Guard) Open() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open
}

// guardRetry is how soon a message held while the guard is shut comes
// back: its consumer loop pulls again only once the guard opens.
const guardRetry = time.Second

// hold runs fn unless the guard is shut; the guard cannot shut while fn
// runs, so that nothing fn appends lands after the barrier.
func (g *Guard) hold(fn func() error) error {
	g.gate.RLock()
	defer g.gate.RUnlock()
	if g.shut {
		return &retryAfter{delay: guardRetry, cause: fmt.Errorf("%w: issuance stopped", ErrWeakened)}
	}
	return fn()
}

// Run watches until ctx ends.
func (g *Guard) Run(ctx context.Context) error {
	if !g.cfg.ReadBackOnly {
		var subs []*nats.Subscription
		for _, subj := range GuardAdvisories {
			sub, err := g.env.NC.Subscribe(subj, g.advisory)
			if err != nil {
				g.log.Warn("cannot hear JetStream advisories; reading back only", "subject", subj, "err", err)
				continue
			}
			subs = append(subs, sub)
		}
		defer func() {
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
		}()
		// The subscriptions reach the server before the first read-back,
		// so that a change made meanwhile is heard.
		_ = g.env.NC.FlushWithContext(ctx)
	}
	// Advisories sent while the connection was down are lost, and a
	// change told by nothing else would wait for the next quiet read-back:
	// a reconnect reads back at once, and often until the advisories are
	// heard again.
	reconnected := g.env.NC.StatusChanged(nats.CONNECTED)
	defer g.env.NC.RemoveStatusListener(reconnected)
	t := time.NewTimer(g.cfg.Interval)
	defer t.Stop()
	why := "read-back"
	var last time.Time // when the previous round started
	for {
		started := time.Now()
		g.round(ctx, why)
		t.Reset(g.pause(last))
		last = started
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			why = "read-back"
		case <-reconnected:
			g.heard.Store(0)
			why = "reconnected"
		case why = <-g.kick:
			// An action's advisory and its API audit (which says who)
			// come moments apart: one round for both.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(advisorySettle):
			}
			select {
			case <-g.kick:
			default:
			}
		}
	}
}

// pause is how long until the next read-back: Quiet while the guard is
// open and has heard an API audit since the round before the last began
// (that round's own requests are told by then, if anything is), Interval
// otherwise. An idle domain then asks the server about its streams and
// consumers twice a minute, not every other second: what they cost the
// server (an API request each, with its audit) was most of an idle
// domain's work.
func (g *Guard) pause(previous time.Time) time.Duration {
	if previous.IsZero() || g.heard.Load() < previous.UnixNano() {
		return g.cfg.Interval
	}
	g.mu.Lock()
	open := g.status.Open
	g.mu.Unlock()
	if !open {
		return g.cfg.Interval
	}
	return g.cfg.Quiet
}

// GuardAdvisories are the advisories the guard hears: streams updated, deleted or created,
// consumers deleted, paused or created, and every JetStream API request
// (which alone tells of a consumer updated, a stream purged or a message
// deleted, and who did it). Each one about what the guard watches starts
// a read-back at once.
var GuardAdvisories = []string{
	"$JS.EVENT.ADVISORY.STREAM.UPDATED.*",
	"$JS.EVENT.ADVISORY.STREAM.DELETED.*",
	"$JS.EVENT.ADVISORY.STREAM.CREATED.*",
	"$JS.EVENT.ADVISORY.CONSUMER.DELETED.*.*",
	"$JS.EVENT.ADVISORY.CONSUMER.PAUSE.*.*",
	"$JS.EVENT.ADVISORY.CONSUMER.CREATED.*.*",
	"$JS.EVENT.ADVISORY.API",
}

// advisory handles one advisory (on the connection's goroutine: cheap).
func (g *Guard) advisory(m *nats.Msg) {
	const prefix = "$JS.EVENT.ADVISORY."
	tok := strings.Split(strings.TrimPrefix(m.Subject, prefix), ".")
	switch {
	case len(tok) == 3 && tok[0] == "STREAM":
		what, ok := g.stream(tok[2])
		if !ok {
			return
		}
		if tok[1] == "DELETED" {
			g.note(what+" deleted", what+": it was deleted")
		}
		g.wake("advisory " + strings.ToLower(tok[0]+" "+tok[1]))
	case len(tok) == 4 && tok[0] == "CONSUMER":
		what, ok := g.consumer(tok[2], tok[3])
		if !ok {
			return
		}
		if tok[1] == "DELETED" {
			g.note(what+" deleted", what+": it was deleted")
		}
		g.wake("advisory " + strings.ToLower(tok[0]+" "+tok[1]))
	case len(tok) == 1 && tok[0] == "API":
		g.apiAudit(m.Data)
	}
}

// apiAudit handles an API audit advisory: a request that changed a
// watched stream or consumer starts a read-back; one that removed
// messages or the object itself is noted, with who asked, because no
// read-back can see it.
func (g *Guard) apiAudit(data []byte) {
	g.heard.Store(time.Now().UnixNano())
	var a struct {
		Subject string `json:"subject"`
		Client  *struct {
			User string `json:"user"`
			Name string `json:"name"`
		} `json:"client"`
		Response string `json:"response"`
	}
	if json.Unmarshal(data, &a) != nil {
		return
	}
	// $JS.API.<op…> or, through a JetStream domain, $JS.<domain>.API.<op…>.
	tok := strings.Split(a.Subject, ".")
	if len(tok) > 2 && tok[0] == "$JS" && tok[1] != "API" {
		tok = append([]string{"$JS"}, tok[2:]...) // drop the domain
	}
	if len(tok) < 4 || tok[0] != "$JS" || tok[1] != "API" {
		return
	}
	op, args := tok[2]+"."+tok[3], tok[4:]
	if op == "STREAM.MSG" && len(args) > 0 { // STREAM.MSG.DELETE.<stream>
		op, args = op+"."+args[0], args[1:]
	}
	if op == "CONSUMER.DURABLE" && len(args) > 0 { // CONSUMER.DURABLE.CREATE.<stream>.<durable>
		op, args = op+"."+args[0], args[1:]
	}
	var what string
	var ok bool
	switch op {
	case "STREAM.UPDATE", "STREAM.DELETE", "STREAM.PURGE", "STREAM.MSG.DELETE", "STREAM.RESTORE":
		if len(args) == 1 {
			what, ok = g.stream(args[0])
		}
	case "CONSUMER.CREATE", "CONSUMER.DURABLE.CREATE", "CONSUMER.DELETE", "CONSUMER.PAUSE":
		if len(args) >= 2 {
			what, ok = g.consumer(args[0], args[1])
		}
	}
	if !ok {
		return
	}
	var resp struct {
		Error *struct{ Code int } `json:"error"`
	}
	if json.Unmarshal([]byte(a.Response), &resp) == nil && resp.Error != nil {
		return // refused: nothing changed
	}
	by := ""
	if a.Client != nil {
		by = byUser + a.Client.User
		if a.Client.Name != "" {
			by += fmt.Sprintf(" (connection %q)", a.Client.Name)
		}
	}
	switch op {
	case "STREAM.DELETE", "CONSUMER.DELETE":
		g.note(what+" deleted", what+": it was deleted"+by)
	case "STREAM.PURGE", "STREAM.MSG.DELETE":
		// The approval component removes fired and answered timers.
		if what != "stream "+g.env.Streams.Timers {
			g.note(what+" "+op, what+": messages were removed ("+strings.ToLower(op)+")"+by)
		}
	}
	g.wake("advisory api " + strings.ToLower(op))
}

const byUser = " by user "

// stream names a watched stream.
func (g *Guard) stream(name string) (string, bool) {
	for _, w := range g.streams {
		if w.want.Name == name {
			return w.what, true
		}
	}
	return "", false
}

// consumer names a watched durable consumer.
func (g *Guard) consumer(stream, name string) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, d := range g.durables {
		if d.Stream == stream && d.Consumer == name {
			return "consumer " + name, true
		}
	}
	return "", false
}

// note keeps what an advisory told for the next round.
func (g *Guard) note(key, problem string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	// The API audit's text says who did it: it wins over the other's.
	if _, ok := g.noticed[key]; !ok || strings.Contains(problem, byUser) {
		g.noticed[key] = problem
	}
}

// wake starts a round now, unless one is already asked for.
func (g *Guard) wake(why string) {
	select {
	case g.kick <- why:
	default:
	}
}

// advisorySettle is how long a round waits after an advisory for the
// others the same action brings.
const advisorySettle = 20 * time.Millisecond

// guardRoundTimeout bounds one read-back.
const guardRoundTimeout = 5 * time.Second

// round reads back everything watched and shuts or opens the guard.
func (g *Guard) round(ctx context.Context, why string) {
	rctx, cancel := context.WithTimeout(ctx, guardRoundTimeout)
	defer cancel()
	g.mu.Lock()
	noticed := g.noticed
	g.noticed = map[string]string{}
	g.mu.Unlock()
	problems, unknown := g.readBack(rctx)
	if ctx.Err() != nil {
		return
	}
	// A problem read back is known by its text, a notice by its key (the
	// same deletion told twice, once with who did it, is one).
	keys := slices.Clone(problems)
	for _, k := range slices.Sorted(maps.Keys(noticed)) {
		problems, keys = append(problems, noticed[k]), append(keys, k)
	}
	g.mu.Lock()
	g.status.Rounds++
	g.status.Checked = time.Now()
	current, open := g.keys, g.status.Open
	g.mu.Unlock()
	switch {
	case len(problems) > 0:
		if open || !subset(keys, current) {
			g.weaken(ctx, problems, keys, why)
			return
		}
		// What is wrong is what was (or less of it): say so, no alert.
		g.mu.Lock()
		g.status.Weakened, g.keys = problems, keys
		g.mu.Unlock()
	case len(unknown) > 0:
		g.log.Warn("could not read back everything; the guard keeps its verdict", "unknown", strings.Join(unknown, "; "))
	case !open:
		g.restore(ctx)
	}
}

// readBack compares what the server reports with what Writ asks for. It
// returns what is weakened, and what it could not read.
func (g *Guard) readBack(ctx context.Context) (problems, unknown []string) {
	for _, w := range g.streams {
		s, err := g.js.Stream(ctx, w.want.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			problems = append(problems, w.what+": it is missing")
		case err != nil:
			unknown = append(unknown, fmt.Sprintf("%s: %v", w.what, err))
		default:
			for _, p := range streamShortfalls(s.CachedInfo().Config, w.want) {
				problems = append(problems, w.what+": "+p)
			}
		}
	}
	g.mu.Lock()
	durables := g.durables
	g.mu.Unlock()
	for _, d := range durables {
		what := "consumer " + d.Consumer
		c, err := g.js.Consumer(ctx, d.Stream, d.Consumer)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			g.mu.Lock()
			seen := g.seen[d.Consumer]
			g.mu.Unlock()
			if seen {
				problems = append(problems, what+": it is missing")
			}
		case errors.Is(err, jetstream.ErrStreamNotFound):
			// Its stream's absence is the problem, told above.
		case err != nil:
			unknown = append(unknown, fmt.Sprintf("%s: %v", what, err))
		default:
			g.mu.Lock()
			g.seen[d.Consumer] = true
			g.mu.Unlock()
			for _, p := range consumerShortfalls(c.CachedInfo(), d.Config()) {
				problems = append(problems, what+": "+p)
			}
		}
	}
	return problems, unknown
}

// weaken shuts the guard (or tells what else is wrong while shut).
func (g *Guard) weaken(ctx context.Context, problems, keys []string, why string) {
	g.gate.Lock()
	g.shut = true
	g.gate.Unlock()
	// Every grant appended before the guard shut is in the stream by now.
	var barrier uint64
	if s, err := g.js.Stream(ctx, g.env.Streams.Name); err == nil {
		barrier = s.CachedInfo().State.LastSeq
	}
	g.mu.Lock()
	wasOpen := g.status.Open
	if wasOpen || g.status.Since.IsZero() {
		g.status.Since, g.status.Barrier, g.status.Noticed = time.Now(), barrier, why
		if wasOpen {
			g.open = make(chan struct{})
		}
	}
	g.status.Open, g.status.Weakened, g.keys = false, problems, keys
	g.mu.Unlock()
	text := strings.Join(problems, "; ")
	g.log.Error("what Writ relies on is weakened: issuance stopped until it is set right",
		"weakened", text, "noticed", why, attrSeq, barrier)
	_ = g.alert(ctx, events.AlertWeakened, text) // shut either way; the log line says it
}

// restore records that everything is right again, then opens the guard.
// A restoration it could not record leaves the guard shut until the next
// round records it: no grant comes after a weakening without the record
// that it ended.
func (g *Guard) restore(ctx context.Context) {
	if err := g.alert(ctx, events.AlertRestored, "every stream, bucket and durable consumer Writ relies on is as it needs them again"); err != nil {
		return
	}
	g.mu.Lock()
	since := g.status.Since
	g.status.Open, g.status.Weakened, g.keys = true, nil, nil
	close(g.open)
	g.mu.Unlock()
	g.gate.Lock()
	g.shut = false
	g.gate.Unlock()
	if !since.IsZero() {
		g.log.Warn("what Writ relies on is right again: issuance resumed", "stopped_for", time.Since(since).Round(time.Millisecond))
	}
}

// alert records a guard alert in the trail, unless the trail's last one
// says the same already (another replica's guard recorded it) or, for
// restored, nothing weakened is on record.
func (g *Guard) alert(ctx context.Context, alert, text string) error {
	if g.signer == nil {
		return nil // the log line is the record
	}
	ctx, cancel := context.WithTimeout(ctx, alertTimeout)
	defer cancel()
	id := events.GuardID(g.env.Domain)
	err := g.signer.react(ctx, g.env.Domain, id, 0, func(_ context.Context, h *view, _ events.Record) (*effect, error) {
		last := h.Series.Guard().Last
		switch {
		case alert == events.AlertRestored && (last == nil || last.Alert != events.AlertWeakened):
			return nil, nil
		case last != nil && last.Alert == alert && (alert == events.AlertRestored || last.Reason == reason(errors.New(text))):
			return nil, nil
		}
		return &effect{
			kind:    events.KindAlerted,
			ordinal: strconv.FormatUint(h.State.LastSeq, 10),
			data:    &events.Alerted{Prev: h.State.LastDigest, Alert: alert, Reason: reason(errors.New(text))},
		}, nil
	})
	if err != nil {
		g.log.Error("could not record the alert in the trail", "alert", alert, "reason", text, "err", err)
	}
	return err
}

// alertTimeout bounds recording an alert.
const alertTimeout = 10 * time.Second

// consumerShortfalls says how a durable consumer is weaker than want.
func consumerShortfalls(got *jetstream.ConsumerInfo, want jetstream.ConsumerConfig) []string {
	var out []string
	bad := func(weaker bool, format string, args ...any) {
		if weaker {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	c := got.Config
	if got.Paused {
		until := "further notice"
		if c.PauseUntil != nil {
			until = c.PauseUntil.UTC().Format(time.RFC3339)
		}
		out = append(out, "it is paused until "+until)
	}
	filters := c.FilterSubjects
	if c.FilterSubject != "" {
		filters = append(slices.Clone(filters), c.FilterSubject)
	}
	bad(!sameSet(filters, want.FilterSubjects), "filters are %v, want %v", filters, want.FilterSubjects)
	bad(c.AckPolicy != want.AckPolicy, "ack policy is %s, want %s", c.AckPolicy, want.AckPolicy)
	bad(lower(int64(c.MaxDeliver), int64(want.MaxDeliver)), "max deliveries is %s, want %s",
		limit(int64(c.MaxDeliver)), limit(int64(want.MaxDeliver)))
	bad(c.InactiveThreshold > 0 && want.InactiveThreshold == 0, "the server removes it after %s idle", c.InactiveThreshold)
	bad(c.HeadersOnly && !want.HeadersOnly, "it delivers headers only")
	return out
}

// subset says whether every one of a is in b.
func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
