package consumers

import (
	"context"
	"errors"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/request"
)

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

// Auditor answers on the record every message on a decision subject that
// is not genuine (unsigned, malformed, signed by a key not entitled to its
// kind): a refused event, so that junk or a forgery someone published
// reads as such in writ audit verify, and not as a genuine event altered.
// (The auditor's checkpoints and attestations are audit.Server's; the
// pipeline runs both under the auditor's name.)
type Auditor struct {
	c *component
}

// NewAuditor returns the auditor. key must be an auditor key of the served
// domain in the trust bundle.
func NewAuditor(env Env, key nkeys.KeyPair) (*Auditor, error) {
	c, err := newComponent(env, identity.RoleAuditor, key)
	if err != nil {
		return nil, err
	}
	return &Auditor{c: c}, nil
}

// Durables lists the durable consumers the auditor reads.
func (a *Auditor) Durables() []Durable { return a.c.env.DurablesOf("auditor") }

// Run answers what is not genuine until ctx ends.
func (a *Auditor) Run(ctx context.Context) error {
	ds := a.Durables()[0]
	return consume(ctx, a.c.js, a.c.env.Observer, ds, ds.Config(), a.c.env.Workers, nil, a.c.log, a.handle)
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
