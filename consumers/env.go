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
	"github.com/writ-dev/writ/history"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/store"
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

// DefaultWorkers is Env.Workers' default, and limits.workers' for new
// setups. Most of a handling is waiting — for a read, for the stream to
// store the append — so it takes many handlings at once to keep the CPU
// busy, the more so when every write is synced to disk: on the 2-core
// development machine, with sync_always and 64 requests in flight, 16 took
// writ bench from 336 to 438 requests/s over 4 (782 from 636 without
// sync); 32 did as well, 64 worse.
const DefaultWorkers = 16

// Env is what every component shares: the connection, the stream, the
// trust bundle, the served domain, the clock and the logger.
type Env struct {
	NC      *nats.Conn
	Streams StreamConfig
	Domain  string // the domain this pipeline serves
	Bundle  *identity.Bundle
	Clock   func() time.Time
	Logger  *slog.Logger
	Workers int // concurrent handlers per component (and as many pulled ahead); default 16
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

// ErrInvalidEnv is what an error of Validate matches: the environment
// cannot run a component.
var ErrInvalidEnv = errors.New("invalid pipeline environment")

// Validate checks the environment and changes nothing: a zero value means
// its default, which the components fill in (withDefaults).
func (e Env) Validate() error {
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
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEnv, err)
	}
	return nil
}

// withDefaults returns the environment with its defaults filled in.
func (e Env) withDefaults() Env {
	e.Streams.Domain = e.Domain
	e.Streams.defaults()
	if e.Clock == nil {
		e.Clock = time.Now
	}
	if e.Logger == nil {
		e.Logger = slog.New(slog.DiscardHandler)
	}
	if e.Workers <= 0 {
		e.Workers = DefaultWorkers
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
	return e
}

// component is the part every consumer shares: it reads a request's
// history and extends it with events signed with its key.
type component struct {
	env    Env
	js     jetstream.JetStream
	reader store.Reader
	trail  *history.Log
	author history.Author
	pub    string
	role   identity.Role
	log    *slog.Logger
	probe  ComponentProbe
}

func newComponent(env Env, role identity.Role, key nkeys.KeyPair) (*component, error) {
	if err := env.Validate(); err != nil {
		return nil, fmt.Errorf("consumers: %s: %w", role, err)
	}
	env = env.withDefaults()
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
	trail := history.New(history.Options{
		JS: js, Stream: env.Streams.Name, Clock: env.Clock,
		Checker: events.Checker{Bundle: env.Bundle, MaxBody: env.MaxBody, Cache: env.Inspected},
	})
	return &component{
		env:    env,
		js:     js,
		reader: trail.Reader(env.Domain),
		trail:  trail,
		author: history.Author{Key: key, Source: events.ComponentSource(env.Domain, role)},
		pub:    pub,
		role:   role,
		log:    env.Logger.With("component", string(role), attrDomain, env.Domain),
		probe:  env.Observer.Component(string(role)),
	}, nil
}

// checker judges events by the component's trust bundle and limits.
func (c *component) checker() events.Checker { return c.trail.Checker() }

// view is a component's view of a request's history: the history, and
// what a component works out from it once.
type view struct {
	*history.History
	rejected map[uint64]bool // votes policy does not let count (approval; computed once)
}

// load reads a request's history as it is now.
func (c *component) load(ctx context.Context, domain, id string) (*view, error) {
	h, err := c.trail.Load(ctx, domain, id, history.Reach{Wait: history.HandedWait})
	if err != nil {
		return nil, err
	}
	return &view{History: h}, nil
}
