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
	"golang.org/x/sync/errgroup"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
)

// Components lists the core components, in pipeline order.
var Components = []string{string(identity.RolePolicy), string(identity.RoleApproval), string(identity.RoleIssuer)}

// Notifier is the notifier component's name. Besides the core components,
// it runs by default when the configuration's notify section names a
// webhook, so that setups without one behave as before.
const Notifier = "notifier"

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
}

// Pipeline is a set of components ready to run.
type Pipeline struct {
	parts    []runner
	names    []string
	observer consumers.Observer
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
	for _, n := range names {
		var r runner
		var err error
		switch n {
		case string(identity.RolePolicy):
			r, err = consumers.NewPolicy(env, rt.PolicyKey, rt.Policies, rt.Flows)
		case string(identity.RoleApproval):
			r, err = consumers.NewApproval(env, rt.ApprovalKey, rt.Policies)
		case string(identity.RoleIssuer):
			r, err = consumers.NewIssuer(env, rt.IssuerKey, rt.IssuerXKey, consumers.GrantPolicy{
				DefaultTTL: time.Duration(rt.Config.Grants.DefaultTTL), MaxTTL: time.Duration(rt.Config.Grants.MaxTTL),
			})
		case Auditor:
			a := rt.Config.Audit
			if a == nil || rt.AuditorKey == nil {
				return nil, fmt.Errorf("pipeline: the auditor needs an audit section and keys.auditor in %s", config.FileName)
			}
			r, err = consumers.NewAuditor(env, rt.AuditorKey, consumers.AuditorConfig{
				Interval: time.Duration(a.CheckpointInterval), Witness: a.Witness, Federated: rt.Config.Federation != nil,
			})
		case Notifier:
			var cfg consumers.NotifierConfig
			if cfg, err = NotifierConfig(rt.Config.Notify, os.Getenv); err == nil {
				r, err = consumers.NewNotifier(env, cfg)
			}
		default:
			return nil, fmt.Errorf("pipeline: unknown component %q; known: %v", n, Known())
		}
		if err != nil {
			return nil, err
		}
		if slices.Contains(p.names, n) {
			return nil, fmt.Errorf("pipeline: component %q named twice", n)
		}
		p.parts, p.names = append(p.parts, r), append(p.names, n)
	}
	return p, nil
}

// NotifierConfig translates a notify section, reading its secret with getenv.
func NotifierConfig(n *config.Notify, getenv func(string) string) (consumers.NotifierConfig, error) {
	if n.Empty() {
		return consumers.NotifierConfig{}, fmt.Errorf("pipeline: the notifier needs webhooks in the notify section")
	}
	if err := n.Validate(); err != nil {
		return consumers.NotifierConfig{}, fmt.Errorf("pipeline: notify: %w", err)
	}
	d := config.NotifyDefaults(*n)
	var errs []error
	hooks := func(ws []config.Webhook) []consumers.Webhook {
		out := make([]consumers.Webhook, 0, len(ws))
		for _, w := range ws {
			f, err := consumers.ParseWebhookFormat(w.Format)
			errs = append(errs, err)
			out = append(out, consumers.Webhook{URL: w.URL, Format: f})
		}
		return out
	}
	c := consumers.NotifierConfig{
		Groups: map[string][]consumers.Webhook{}, Principals: map[string][]consumers.Webhook{},
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
	return g.Wait()
}
