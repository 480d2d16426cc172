package consumers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"golang.org/x/sync/errgroup"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/locks"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/request"
)

var errTimerEarly = errors.New("consumers: timer fired before the deadline")

// GrantPolicy bounds the lifetime of grants.
type GrantPolicy struct {
	DefaultTTL time.Duration // when the request names none; default 15m
	MaxTTL     time.Duration // hard cap whatever the policy says; default 1h
	// BreakGlassMaxTTL caps break-glass grants, under the policy's own cap; default 15m.
	BreakGlassMaxTTL time.Duration
}

// Issuer mints a grant for every request that is allowed or approved:
// evaluated(allow) | approved → granted.
type Issuer struct {
	c      *component
	minter *issuer.Issuer
	grants GrantPolicy
	locks  *locks.List
}

// NewIssuer returns the issuer consumer. key signs events and grants; xkey seals grants.
func NewIssuer(env Env, key, xkey nkeys.KeyPair, grants GrantPolicy) (*Issuer, error) {
	c, err := newComponent(env, identity.RoleIssuer, key)
	if err != nil {
		return nil, err
	}
	m, err := issuer.New(key, xkey)
	if err != nil {
		return nil, err
	}
	if grants.DefaultTTL == 0 {
		grants.DefaultTTL = 15 * time.Minute
	}
	if grants.MaxTTL == 0 {
		grants.MaxTTL = time.Hour
	}
	if grants.BreakGlassMaxTTL == 0 {
		grants.BreakGlassMaxTTL = 15 * time.Minute
	}
	if err := issuer.CheckLifetimes(grants.DefaultTTL, grants.MaxTTL); err != nil {
		return nil, fmt.Errorf("consumers: issuer: %w", err)
	}
	return &Issuer{c: c, minter: m, grants: grants, locks: locks.NewList(c.env.NC, c.js, c.reader, c.checker(), c.log)}, nil
}

// Durables lists the durable consumers the issuer reads.
func (i *Issuer) Durables() []Durable {
	return i.c.env.DurablesOf("issuer")
}

// Run consumes decisions until ctx ends.
func (i *Issuer) Run(ctx context.Context) error {
	ds := i.Durables()[0]
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return keepWatching(ctx, i.c.log, "lock list", i.locks.Run) })
	g.Go(func() error {
		var shut gate // the issuer pulls only while the guard is open
		if i.c.env.Guard != nil {
			shut = i.c.env.Guard
		}
		return consume(ctx, i.c.js, i.c.env.Observer, ds, ds.Config(), i.c.env.Workers, shut, i.c.log, i.handle)
	})
	return g.Wait()
}

func (i *Issuer) handle(ctx context.Context, m jetstream.Msg) error {
	g := i.c.env.Guard
	if g == nil {
		return handleAudit(ctx, i.c, m, i.decide)
	}
	// While the guard is shut nothing is minted; the message comes back
	// once it opens.
	return g.hold(func() error { return handleAudit(ctx, i.c, m, i.decide) })
}

// decide re-checks the evidence by folding the whole history from
// verified events (a forged or out-of-order decision changes nothing) and
// mints only for a request the fold says is allowed or approved.
func (i *Issuer) decide(ctx context.Context, h *view, this events.Record) (*effect, error) {
	if err := h.Errs[this.Seq]; err != nil {
		return refuse(h, this, err), nil
	}
	st := h.State
	if !st.Status.AwaitsGrant() {
		return nil, nil
	}
	// A lock blocks new grants: the refusal is recorded, and nothing is minted.
	if err := i.locks.Check(ctx, st.Requester); err != nil {
		if errors.Is(err, locks.ErrNotReady) {
			return nil, &retryAfter{delay: 200 * time.Millisecond, cause: err}
		}
		return refuse(h, this, err), nil
	}
	g, err := i.grant(st, h.Now)
	if err != nil {
		return nil, err
	}
	return &effect{kind: events.KindGranted, data: g}, nil
}

// TTL is the grant lifetime for a request: what it asked for (or the
// default), capped by the policy and by the issuer's maximum.
func (g GrantPolicy) TTL(st request.State) time.Duration {
	ttl := g.DefaultTTL
	if s := st.Request.TTLSeconds; s > 0 {
		ttl = time.Duration(s) * time.Second
	}
	if m := time.Duration(st.Evaluation.MaxTTLSeconds) * time.Second; m > 0 && ttl > m {
		ttl = m
	}
	if st.Evaluation.BreakGlass && g.BreakGlassMaxTTL > 0 {
		ttl = min(ttl, g.BreakGlassMaxTTL)
	}
	return min(ttl, g.MaxTTL)
}

func (i *Issuer) grant(st request.State, now time.Time) (*events.Granted, error) {
	req := st.Request
	nbf := now.UTC().Truncate(time.Second)
	ttl := i.grants.TTL(st)
	token, claims, err := i.minter.Mint(issuer.Constraints{
		RequestID:    st.ID,
		Holder:       st.Requester.Key,
		Audience:     st.Domain,
		Action:       req.Action,
		Resource:     req.Resource,
		ParamsDigest: issuer.ParamsDigest(req.Params),
		Evidence:     st.LastDigest,
		BreakGlass:   st.Evaluation.BreakGlass,
		NotBefore:    nbf,
		TTL:          ttl,
	})
	if err != nil {
		return nil, &terminate{reason: err.Error()}
	}
	sealed, err := i.minter.Seal(token, req.HolderXKey)
	if err != nil {
		return nil, &terminate{reason: err.Error()}
	}
	return &events.Granted{
		Prev:       st.LastDigest,
		TokenHash:  issuer.TokenHash(token),
		Sealed:     sealed,
		SealedBy:   i.minter.XKey(),
		Holder:     claims.Holder,
		NotBefore:  claims.NotBefore,
		ExpiresAt:  claims.Expires,
		Evidence:   st.LastDigest,
		BreakGlass: claims.BreakGlass,
	}, nil
}
