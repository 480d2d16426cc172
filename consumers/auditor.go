package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"golang.org/x/sync/errgroup"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/request"
)

// AuditorConfig configures the auditor.
type AuditorConfig struct {
	Interval time.Duration // between checkpoints; 0: on demand only
	Witness  []string      // domains whose checkpoints this domain records
	// Federated says other domains' streams are reached in their own
	// JetStream domains, across leafnodes.
	Federated bool
}

// DurableAuditor is the auditor's durable consumer: part of the wire
// contract, like the others.
const DurableAuditor = "writ-auditor-"

// disownedKinds are the decision subjects the auditor answers for: every
// kind a component emits (as the kind table says: events.Kinds), less
// selfGuardedKinds. A kind added is answered for unless exempted here.
var disownedKinds = slices.DeleteFunc(events.Kinds(), func(k events.Kind) bool {
	return k.FromPrincipal() || slices.Contains(selfGuardedKinds, k)
})

// selfGuardedKinds are the component kinds the auditor leaves alone: those
// whose own consumers already refuse what is not genuine (evaluated:
// approval, issuer; approved: issuer), and the auditor's own series (a
// refusal would break their chain of prev, as junk among them already
// has).
var selfGuardedKinds = []events.Kind{events.KindEvaluated, events.KindApproved, events.KindCheckpoint, events.KindWitnessed}

// Auditor appends signed checkpoints of the audit stream, at an interval
// and on demand, and records the checkpoints of the domains it witnesses.
// It also answers on the record every message on a decision subject that
// is not genuine (unsigned, malformed, signed by a key not entitled to its
// kind): a refused event, so that junk or a forgery someone published
// reads as such in writ audit verify, and not as a genuine event altered.
type Auditor struct {
	c   *component
	key nkeys.KeyPair
	cfg AuditorConfig
	mu  sync.Mutex // one checkpoint at a time
	cp  *audit.Checkpointer
}

// NewAuditor returns the auditor. key must be an auditor key of the served
// domain in the trust bundle.
func NewAuditor(env Env, key nkeys.KeyPair, cfg AuditorConfig) (*Auditor, error) {
	c, err := newComponent(env, identity.RoleAuditor, key)
	if err != nil {
		return nil, err
	}
	return &Auditor{c: c, key: key, cfg: cfg, cp: &audit.Checkpointer{
		NC: env.NC, Stream: env.Streams.Name, Domain: env.Domain, Key: key, Bundle: env.Bundle, Clock: env.Clock,
	}}, nil
}

// Checkpoint makes a checkpoint now.
func (a *Auditor) Checkpoint(ctx context.Context) (*audit.Made, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cp.Checkpoint(ctx)
}

// Durables lists the durable consumers the auditor reads.
func (a *Auditor) Durables() []Durable { return a.c.env.DurablesOf("auditor") }

// Run makes checkpoints, and answers what is not genuine, until ctx ends.
func (a *Auditor) Run(ctx context.Context) error {
	ds := a.Durables()[0]
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return consume(ctx, a.c.js, a.c.env.Observer, ds, ds.Config(), a.c.env.Workers, nil, a.c.log, a.handle)
	})
	g.Go(func() error { return a.checkpoints(ctx) })
	return g.Wait()
}

// handle refuses a message on a decision subject that is not genuine. A
// genuine one is judged by the fold (writ audit verify), not here: a
// refusal must never hide an entitled key's illegal event.
func (a *Auditor) handle(ctx context.Context, m jetstream.Msg) error {
	md, err := m.Metadata()
	if err != nil {
		return &terminate{reason: "no metadata"}
	}
	msg := events.Message{Subject: m.Subject(), Seq: md.Sequence.Stream, Time: md.Timestamp, Header: m.Headers(), Body: m.Data()}
	if a.c.checker().Inspect(msg, md.Timestamp).Valid() {
		return nil
	}
	return handleAudit(ctx, a.c, m, a.disown)
}

func (a *Auditor) disown(_ context.Context, h *view, this events.Record) (*effect, error) {
	if err := h.Errs[this.Seq]; errors.Is(err, request.ErrInvalid) {
		return refuse(h, this, err), nil
	}
	return nil, nil
}

// checkpoints serves checkpoints on demand and makes them at the interval.
func (a *Auditor) checkpoints(ctx context.Context) error {
	sub, err := a.c.env.NC.Subscribe(audit.CheckpointSubject(a.c.env.Domain), func(m *nats.Msg) {
		reply := func(v any) {
			b, _ := json.Marshal(v)
			_ = m.Respond(b)
		}
		made, err := a.Checkpoint(ctx)
		if err != nil {
			level := slog.LevelWarn
			switch {
			case errors.Is(err, audit.ErrTrailCut):
				level = slog.LevelError
			case errors.Is(err, audit.ErrEmpty):
				level = slog.LevelDebug // the asker hears it; nothing is wrong
			}
			a.c.log.Log(ctx, level, "checkpoint asked for failed", "err", err)
			reply(map[string]string{"error": err.Error()})
			return
		}
		reply(made)
	})
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	att, err := a.c.env.NC.Subscribe(audit.AttestSubject(a.c.env.Domain), func(m *nats.Msg) { a.attest(ctx, m) })
	if err != nil {
		return err
	}
	defer func() { _ = att.Unsubscribe() }()
	if a.cfg.Interval <= 0 {
		<-ctx.Done()
		return nil
	}
	tick := time.NewTicker(a.cfg.Interval)
	defer tick.Stop()
	for {
		a.round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// round makes a checkpoint if the stream grew, and records the witnessed
// domains' latest ones. Failures wait for the next round: checkpoints are
// evidence about the trail, never in the way of requests.
func (a *Auditor) round(ctx context.Context) {
	made, err := a.Checkpoint(ctx)
	switch {
	case errors.Is(err, audit.ErrEmpty):
		a.c.log.Debug("nothing to checkpoint yet")
	case errors.Is(err, audit.ErrTrailCut):
		// The auditor may emit no alerted event (the approval component
		// owns that kind), and the trail is what lost messages: the log
		// says it, every round, until someone looks.
		a.c.log.Error("the audit stream lost messages no checkpoint covered; no checkpoint is signed over it until it is looked into", "err", err)
	case err != nil && ctx.Err() == nil:
		a.c.log.Warn("checkpoint failed; trying again next round", "err", err)
	case err == nil && made.New:
		a.c.log.Info("checkpoint", "stream_seq", made.Seq, "tree_size", made.Checkpoint.TreeSize, "root", made.Checkpoint.Root)
	}
	for _, d := range a.cfg.Witness {
		from := store.Reader{NC: a.c.env.NC, Stream: a.c.env.Streams.Name}
		if a.cfg.Federated {
			from.APIPrefix = store.DomainAPI(d)
		}
		a.mu.Lock()
		recorded, err := a.cp.Witness(ctx, d, from)
		a.mu.Unlock()
		switch {
		case err != nil && ctx.Err() == nil:
			a.c.log.Warn("could not witness a domain's checkpoint; trying again next round", "witnessed", d, "err", err)
		case recorded:
			a.c.log.Info("witnessed a checkpoint", "witnessed", d)
		}
	}
}

// attest signs an evidence bundle's manifest once it has checked that the
// bundle holds exactly what the stream does.
func (a *Auditor) attest(ctx context.Context, m *nats.Msg) {
	reply := func(v any) {
		b, _ := json.Marshal(v)
		_ = m.Respond(b)
	}
	var e audit.Evidence
	if err := json.Unmarshal(m.Data, &e); err != nil {
		reply(map[string]string{"error": "not an evidence bundle: " + err.Error()})
		return
	}
	if e.Domain != a.c.env.Domain {
		reply(map[string]string{"error": "this auditor attests " + a.c.env.Domain + "'s requests only"})
		return
	}
	if err := audit.Confirm(ctx, a.c.reader, a.c.env.Bundle, &e); err != nil {
		reply(map[string]string{"error": err.Error()})
		return
	}
	if err := audit.Attest(&e, a.key); err != nil {
		reply(map[string]string{"error": err.Error()})
		return
	}
	a.c.log.Info("attested an evidence bundle", attrRequest, e.RequestID)
	reply(e.Attestation)
}
