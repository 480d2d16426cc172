package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/request"
)

// Durable consumer name prefixes: part of the wire contract, never rename.
// The served domain is appended, so that domains can share a stream.
const (
	DurablePolicy   = "writ-policy-"
	DurableApproval = "writ-approval-"
	DurableTimers   = "writ-timers-"
	DurableIssuer   = "writ-issuer-"
)

// Log attribute keys.
const (
	attrRequest = "request_id"
	attrDomain  = "domain"
	attrSeq     = "stream_seq"
	attrKind    = "kind"
)

// Env is what every component shares: the connection, the stream, the
// trust bundle, the served domain, the clock and the logger.
type Env struct {
	NC      *nats.Conn
	Streams StreamConfig
	Domain  string // the domain this pipeline serves
	Bundle  *identity.Bundle
	Clock   func() time.Time
	Logger  *slog.Logger
	Workers int // concurrent handlers per component; default 4
	MaxBody int // largest accepted event body; default events.DefaultMaxBody
	// DurableSuffix is appended to durable names. Replicas of a component
	// share one durable consumer; a different suffix gives a component its
	// own copy of every message, which tests use to race two replicas.
	DurableSuffix string
	// Observer hears what the components do (metrics, health); optional.
	Observer Observer
	// Guard, when set, stops issuance while what Writ relies on is
	// weakened: the issuer consults it before it mints.
	Guard *Guard
	// Inspected remembers which stored events were checked and what was
	// found, so that histories read again are not verified again; share one
	// among the components of a process. Default: one per component.
	Inspected *events.InspectCache
}

// Validate checks the environment and fills in defaults.
func (e *Env) Validate() error {
	var errs []error
	if e.NC == nil {
		errs = append(errs, errors.New("no NATS connection"))
	}
	if !identity.ValidDomainName(e.Domain) {
		errs = append(errs, fmt.Errorf("invalid domain %q", e.Domain))
	}
	if e.Bundle == nil || e.Bundle.Domains[e.Domain] == nil {
		errs = append(errs, fmt.Errorf("the trust bundle does not list domain %q", e.Domain))
	}
	e.Streams.Domain = e.Domain
	e.Streams.defaults()
	if e.Clock == nil {
		e.Clock = time.Now
	}
	if e.Logger == nil {
		e.Logger = slog.New(slog.DiscardHandler)
	}
	if e.Workers <= 0 {
		e.Workers = 4
	}
	if e.MaxBody <= 0 {
		e.MaxBody = events.DefaultMaxBody
	}
	if e.Observer == nil {
		e.Observer = nopObserver{}
	}
	if e.Inspected == nil {
		e.Inspected = events.NewInspectCache(events.DefaultInspectCache)
	}
	return errors.Join(errs...)
}

// component is the part every consumer shares: it loads a request's
// history, folds it, and publishes the next event signed with its key.
type component struct {
	env     Env
	js      jetstream.JetStream
	reader  store.Reader
	checker events.Checker
	key     nkeys.KeyPair
	pub     string
	role    identity.Role
	log     *slog.Logger
	probe   ComponentProbe
}

func newComponent(env Env, role identity.Role, key nkeys.KeyPair) (*component, error) {
	if err := env.Validate(); err != nil {
		return nil, fmt.Errorf("consumers: %s: %w", role, err)
	}
	if key == nil {
		return nil, fmt.Errorf("consumers: %s: no signing key", role)
	}
	pub, err := key.PublicKey()
	if err != nil {
		return nil, err
	}
	if !env.Bundle.Entitled(env.Domain, role, pub) {
		return nil, fmt.Errorf("consumers: %s key %s is not in the trust bundle for %q", role, pub, env.Domain)
	}
	js, err := jetstream.New(env.NC)
	if err != nil {
		return nil, err
	}
	return &component{
		env:     env,
		js:      js,
		reader:  store.Reader{NC: env.NC, Stream: env.Streams.Name},
		checker: events.Checker{Bundle: env.Bundle, MaxBody: env.MaxBody, Cache: env.Inspected},
		key:     key,
		pub:     pub,
		role:    role,
		log:     env.Logger.With("component", string(role), attrDomain, env.Domain),
		probe:   env.Observer.Component(string(role)),
	}, nil
}

// lagReadWait is how long a component reads again for a message it was
// handed before it gives the message back for later.
const lagReadWait = 128 * time.Millisecond

// history is a request's inspected history and its fold.
type history struct {
	records []events.Record
	state   request.State
	errs    map[uint64]error // why each record changed nothing
	now     time.Time

	rejected map[uint64]bool // votes policy does not let count (approval; computed once)
}

func (h *history) record(seq uint64) (events.Record, bool) {
	for _, r := range h.records {
		if r.Seq == seq {
			return r, true
		}
	}
	return events.Record{}, false
}

func (c *component) load(ctx context.Context, domain, id string) (*history, error) {
	return c.loadReaching(ctx, domain, id, 0)
}

// loadReaching is load, reading again for a little while (lagReadWait)
// while the history ends before sequence floor: the message being handled
// is in it, and a replica of the stream that answered without it is
// milliseconds behind. Past that, store.ErrBehind.
func (c *component) loadReaching(ctx context.Context, domain, id string, floor uint64) (*history, error) {
	msgs, err := c.reader.LoadReaching(ctx, events.RequestFilter(domain, id), floor, lagReadWait)
	if err != nil {
		return nil, err
	}
	now := c.env.Clock()
	h := &history{now: now, records: make([]events.Record, len(msgs))}
	for i, m := range msgs {
		h.records[i] = c.checker.Inspect(m, now)
	}
	h.state, h.errs = request.Fold(h.records)
	if h.state.ID == "" {
		// No event yet: what is appended starts this id's history.
		h.state.Domain, h.state.ID = domain, id
	}
	return h, nil
}

// emit signs and publishes the next event of a request, expecting the
// history to end where the state says it ends.
func (c *component) emit(ctx context.Context, st request.State, kind events.Kind, ordinal string, data any) (uint64, error) {
	out, err := events.Seal(events.Draft{
		Domain:    st.Domain,
		RequestID: st.ID,
		Kind:      kind,
		Ordinal:   ordinal,
		Source:    "writ://" + c.env.Domain + "/" + string(c.role),
		Time:      c.env.Clock(),
		Data:      data,
	}, c.key)
	if err != nil {
		return 0, err
	}
	// Every reader refuses a body over the limit: appending one would
	// record an answer nobody trusts.
	if len(out.Body) > c.env.MaxBody {
		return 0, fmt.Errorf("%w: %s of %d bytes, limit %d", events.ErrOversized, kind, len(out.Body), c.env.MaxBody)
	}
	seq, err := store.Append(ctx, c.js, c.env.Streams.Name, out, st.LastSeq, events.RequestFilter(st.Domain, st.ID))
	if err == nil {
		// The next component to read this history need not check it again.
		c.checker.Remember(out, seq)
	}
	return seq, err
}
