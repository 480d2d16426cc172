package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"golang.org/x/sync/errgroup"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/identity/connect"
	"github.com/writ-dev/writ/internal/access"
	"github.com/writ-dev/writ/notify"
)

// Components lists the core components, in pipeline order.
var Components = []string{string(identity.RolePolicy), string(identity.RoleApproval), string(identity.RoleIssuer)}

// Notifier is the notifier component's name. Besides the core components,
// it runs by default when the configuration's notify section names a
// webhook, so that setups without one behave as before.
const Notifier = notify.Component

// Auditor is the auditor component's name; it runs by default when the
// configuration has an audit section.
const Auditor = string(identity.RoleAuditor)

// Known lists every component Build knows.
func Known() []string { return append(slices.Clone(Components), Notifier, Auditor) }

// Defaults lists the components a runtime runs when none are named.
func Defaults(rt *config.Runtime) []string {
	out := slices.Clone(Components)
	if rt.Config.Audit != nil {
		out = append(out, Auditor)
	}
	if !rt.Config.Notify.Empty() {
		out = append(out, Notifier)
	}
	return out
}

// Options adjust how the pipeline runs.
type Options struct {
	Components    []string // default: all
	Clock         func() time.Time
	Logger        *slog.Logger
	DurableSuffix string // tests: a second, independent set of durable consumers
	// Observer hears what the components do: metrics and health (see
	// package ops). Optional.
	Observer consumers.Observer
	// Connect, when set, gives each component a connection of its own
	// (with the permissions of its role): Build calls it once per
	// component, and Run closes what it returned once the components have
	// stopped. Nil: every component uses Build's connection.
	Connect func(component string) (*nats.Conn, error)
	// Guard adjusts the guard of the streams, buckets and consumers
	// (consumers.Guard), which runs with the issuer or the approval
	// component.
	Guard consumers.GuardConfig
}

// Pipeline is a set of components ready to run.
type Pipeline struct {
	parts    []runner
	names    []string
	observer consumers.Observer
	conns    []*nats.Conn // the components' own connections, closed by Run
	guard    *consumers.Guard
}

type runner interface{ Run(context.Context) error }

// durables is a component that reads durable consumers.
type durables interface{ Durables() []consumers.Durable }

// Streams returns the stream configuration a runtime asks for.
func Streams(rt *config.Runtime) consumers.StreamConfig {
	s := rt.Config.Stream
	return consumers.StreamConfig{
		Domain: rt.Config.Domain, Name: s.Name, Timers: s.Timers, Replicas: s.Replicas,
		Duplicates: time.Duration(s.Duplicates), MaxAge: time.Duration(s.MaxAge),
	}
}

// Ensure creates or checks the streams.
func Ensure(ctx context.Context, nc *nats.Conn, rt *config.Runtime) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	return consumers.EnsureStreams(ctx, js, Streams(rt))
}

// Build creates the components named in o (all by default).
func Build(nc *nats.Conn, rt *config.Runtime, o Options) (*Pipeline, error) {
	names := o.Components
	if len(names) == 0 {
		names = Defaults(rt)
	}
	env := consumers.Env{
		NC: nc, Streams: Streams(rt), Domain: rt.Config.Domain, Bundle: rt.Bundle,
		Clock: o.Clock, Logger: o.Logger, Workers: rt.Config.Limits.Workers,
		MaxBody: rt.Config.Limits.MaxEventBytes, DurableSuffix: o.DurableSuffix,
		Observer: o.Observer,
		// One cache for every component: each reads what the others
		// wrote, and what one checked the others need not.
		Inspected: events.NewInspectCache(events.DefaultInspectCache),
	}
	p := &Pipeline{observer: o.Observer}
	if err := p.buildGuard(names, &env, rt, o); err != nil {
		return nil, err
	}
	for _, n := range names {
		if slices.Contains(p.names, n) {
			p.close()
			return nil, fmt.Errorf("pipeline: component %q named twice", n)
		}
		r, err := p.build(n, env, rt, o)
		if err != nil {
			p.close()
			return nil, err
		}
		p.parts, p.names = append(p.parts, r), append(p.names, n)
	}
	if p.guard != nil {
		p.guard.Expect(p.Durables())
	}
	return p, nil
}

// buildGuard makes the guard that stops the issuer while what Writ relies
// on is weakened, when the issuer or the approval component runs here, and
// gives it to the components (env). It runs as the approval component
// when that runs here, on a connection of that role: its alerts are
// approval's to sign (events.RoleFor). Else it runs as the issuer, and
// logs its alerts only.
func (p *Pipeline) buildGuard(names []string, env *consumers.Env, rt *config.Runtime, o Options) error {
	role := ""
	var key nkeys.KeyPair
	switch {
	case slices.Contains(names, string(identity.RoleApproval)):
		role, key = string(identity.RoleApproval), rt.ApprovalKey
	case slices.Contains(names, string(identity.RoleIssuer)):
		role = string(identity.RoleIssuer)
	default:
		return nil
	}
	genv := *env
	if o.Connect != nil {
		nc, err := o.Connect(role)
		if err != nil {
			return fmt.Errorf("pipeline: guard: connect: %w", err)
		}
		p.conns = append(p.conns, nc)
		genv.NC = nc
	}
	g, err := consumers.NewGuard(genv, key, o.Guard)
	if err != nil {
		p.close()
		return err
	}
	p.guard, env.Guard = g, g
	return nil
}

// build makes component n, on a connection of its own when o says so.
func (p *Pipeline) build(n string, env consumers.Env, rt *config.Runtime, o Options) (runner, error) {
	if !slices.Contains(Known(), n) {
		return nil, fmt.Errorf("pipeline: unknown component %q; known: %v", n, Known())
	}
	if o.Connect != nil {
		nc, err := o.Connect(n)
		if err != nil {
			return nil, fmt.Errorf("pipeline: %s: connect: %w", n, err)
		}
		p.conns = append(p.conns, nc)
		env.NC = nc
	}
	switch n {
	case string(identity.RolePolicy):
		return consumers.NewPolicy(env, rt.PolicyKey, rt.Policies, rt.Flows)
	case string(identity.RoleApproval):
		return consumers.NewApproval(env, rt.ApprovalKey, rt.Policies)
	case string(identity.RoleIssuer):
		return consumers.NewIssuer(env, rt.IssuerKey, rt.IssuerXKey, consumers.GrantPolicy{
			DefaultTTL: time.Duration(rt.Config.Grants.DefaultTTL), MaxTTL: time.Duration(rt.Config.Grants.MaxTTL),
		})
	case Auditor:
		a := rt.Config.Audit
		if a == nil || rt.AuditorKey == nil {
			return nil, fmt.Errorf("pipeline: the auditor needs an audit section and keys.auditor in %s", config.FileName)
		}
		junk, err := consumers.NewAuditor(env, rt.AuditorKey)
		if err != nil {
			return nil, err
		}
		server, err := audit.NewServer(audit.ServerConfig{
			NC: env.NC, Stream: env.Streams.Name, Domain: env.Domain, Key: rt.AuditorKey, Bundle: env.Bundle,
			Clock: env.Clock, Logger: env.Logger,
			Interval: time.Duration(a.CheckpointInterval), Witness: a.Witness, Federated: rt.Config.Federation != nil,
		})
		if err != nil {
			return nil, err
		}
		return &auditor{Auditor: junk, server: server}, nil
	case Notifier:
		cfg, err := NotifierConfig(rt.Config.Notify, os.Getenv)
		if err != nil {
			return nil, err
		}
		return notify.NewNotifier(env, cfg)
	}
	return nil, fmt.Errorf("pipeline: unknown component %q", n)
}

// auditor runs the auditor's two parts as one component: the consumer
// that answers junk on decision subjects, and the server of checkpoints
// and attestations.
type auditor struct {
	*consumers.Auditor
	server *audit.Server
}

func (a *auditor) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.Auditor.Run(ctx) })
	g.Go(func() error { return a.server.Run(ctx) })
	return g.Wait()
}

// close closes the components' own connections, once what they published
// has reached the server.
func (p *Pipeline) close() {
	for _, nc := range p.conns {
		_ = nc.FlushTimeout(5 * time.Second)
		nc.Close()
	}
	p.conns = nil
}

// NotifierConfig translates a notify section, reading its secret with getenv.
func NotifierConfig(n *config.Notify, getenv func(string) string) (notify.NotifierConfig, error) {
	if n.Empty() {
		return notify.NotifierConfig{}, fmt.Errorf("pipeline: the notifier needs webhooks in the notify section")
	}
	if err := n.Validate(); err != nil {
		return notify.NotifierConfig{}, fmt.Errorf("pipeline: notify: %w", err)
	}
	d := config.NotifyDefaults(*n)
	var errs []error
	hooks := func(ws []config.Webhook) []notify.Webhook {
		out := make([]notify.Webhook, 0, len(ws))
		for _, w := range ws {
			f, err := notify.ParseWebhookFormat(w.Format)
			errs = append(errs, err)
			out = append(out, notify.Webhook{URL: w.URL, Format: f})
		}
		return out
	}
	c := notify.NotifierConfig{
		Groups: map[string][]notify.Webhook{}, Principals: map[string][]notify.Webhook{},
		Requesters: hooks(d.Requesters),
		Retries:    d.Retries, Backoff: time.Duration(d.Backoff), MaxBackoff: time.Duration(d.MaxBackoff),
		MaxElapsed: time.Duration(d.MaxElapsed), Timeout: time.Duration(d.Timeout), Workers: d.Workers,
	}
	for g, ws := range d.Groups {
		c.Groups[g] = hooks(ws)
	}
	for p, ws := range d.Principals {
		c.Principals[p] = hooks(ws)
	}
	if d.SecretEnv != "" {
		secret := getenv(d.SecretEnv)
		if len(secret) < 16 {
			errs = append(errs, fmt.Errorf("pipeline: notify: $%s must hold the webhook secret, 16 characters or more", d.SecretEnv))
		}
		c.Secret = []byte(secret)
	}
	return c, errors.Join(errs...)
}

// Guard is the guard of what the pipeline relies on, or nil when it runs
// neither the issuer nor the approval component.
func (p *Pipeline) Guard() *consumers.Guard { return p.guard }

// Names lists the components that will run.
func (p *Pipeline) Names() []string { return slices.Clone(p.names) }

// Durables lists the durable consumers the components read.
func (p *Pipeline) Durables() []consumers.Durable {
	var out []consumers.Durable
	for _, r := range p.parts {
		if d, ok := r.(durables); ok {
			out = append(out, d.Durables()...)
		}
	}
	return out
}

// Run runs every component until ctx ends or one fails; it returns when all
// have stopped, each having finished the messages it held.
func (p *Pipeline) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	if p.guard != nil {
		g.Go(func() error { return p.guard.Run(ctx) })
	}
	for i, r := range p.parts {
		var probe consumers.ComponentProbe
		if p.observer != nil {
			probe = p.observer.Component(p.names[i])
		}
		g.Go(func() error {
			if probe != nil {
				probe.Running(true)
				defer probe.Running(false)
			}
			return r.Run(ctx)
		})
	}
	defer p.close()
	return g.Wait()
}

// RoleConnector returns an Options.Connect that connects each component
// with connect, as a user of its own role: a key made for the connection
// and a user JWT the domain's account key signs with that role's
// permissions. Nothing is written to disk; the JWT does not expire, and
// dies with the key when the process ends.
//
// An error the server reports on the connection (a permission it refused)
// is logged to log: a component refused what its role needs is a bug.
func RoleConnector(rt *config.Runtime, suffix string, log *slog.Logger, connect func(...nats.Option) (*nats.Conn, error)) (func(string) (*nats.Conn, error), error) {
	account, err := identity.LoadSeed(rt.Config.Path(config.AccountSeed))
	if err != nil {
		return nil, fmt.Errorf("pipeline: the components' connections are signed with the account key: %w", err)
	}
	return func(component string) (*nats.Conn, error) {
		opts, err := RoleOptions(rt.Config, account, suffix, access.Role(component))
		if err != nil {
			return nil, err
		}
		return connect(append(opts, nats.Name("writ "+component), nats.MaxReconnects(-1), ErrorLogger(log, component))...)
	}, nil
}

// RoleOptions are the connection options of a user of roles (their
// union), signed by account for a key made now.
func RoleOptions(c *config.Config, account nkeys.KeyPair, suffix string, roles ...access.Role) ([]nats.Option, error) {
	token, user, err := c.SignRole(account, config.RoleSpec{Roles: roles, Name: "writ-" + string(roles[0]), DurableSuffix: suffix})
	if err != nil {
		return nil, err
	}
	return connect.Key(c.Domain, token, user)
}

// ErrorLogger logs the errors the server reports on a connection
// (permissions refused, slow consumers) at error level.
func ErrorLogger(log *slog.Logger, name string) nats.Option {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		attrs := []any{"connection", name, "err", err}
		if sub != nil {
			attrs = append(attrs, "subject", sub.Subject)
		}
		log.Error("NATS server reported an error", attrs...)
	})
}
