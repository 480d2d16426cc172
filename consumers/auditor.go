package consumers

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/store"
)

// AuditorConfig configures the auditor.
type AuditorConfig struct {
	Interval time.Duration // between checkpoints; 0: on demand only
	Witness  []string      // domains whose checkpoints this domain records
	// Federated says other domains' streams are reached in their own
	// JetStream domains, across leafnodes.
	Federated bool
}

// CheckpointSubject is where a checkpoint is asked for on demand; the
// reply is an audit.Made, or {"error": "..."}.
func CheckpointSubject(domain string) string { return "writ-audit." + domain + ".checkpoint" }

// AttestSubject is where an evidence bundle is sent for the auditor's
// attestation; the reply is an audit.Attestation, or {"error": "..."}.
func AttestSubject(domain string) string { return "writ-audit." + domain + ".attest" }

// Auditor appends signed checkpoints of the audit stream, at an interval
// and on demand, and records the checkpoints of the domains it witnesses.
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

// Run makes checkpoints until ctx ends.
func (a *Auditor) Run(ctx context.Context) error {
	sub, err := a.c.env.NC.Subscribe(CheckpointSubject(a.c.env.Domain), func(m *nats.Msg) {
		reply := func(v any) {
			b, _ := json.Marshal(v)
			_ = m.Respond(b)
		}
		made, err := a.Checkpoint(ctx)
		if err != nil {
			a.c.log.Warn("checkpoint asked for failed", "err", err)
			reply(map[string]string{"error": err.Error()})
			return
		}
		reply(made)
	})
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	att, err := a.c.env.NC.Subscribe(AttestSubject(a.c.env.Domain), func(m *nats.Msg) { a.attest(ctx, m) })
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
