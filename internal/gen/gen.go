package gen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"golang.org/x/sync/errgroup"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/request"
)

// Outcome is how a generated request ends.
type Outcome uint8

// The outcomes a history can be generated with.
const (
	AutoGranted    Outcome = iota // allowed by policy at once, then granted
	Approved                      // two SRE leads approve, then granted
	PolicyDenied                  // denied by policy
	ApproverDenied                // an SRE lead says no (sometimes after the other said yes)
	Expired                       // nobody answered before the deadline
	Pending                       // still waiting for approvers
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"auto-granted", "approved", "policy-denied", "approver-denied", "expired", "pending"}

func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", o)
}

// Status is the status the outcome's history folds to.
func (o Outcome) Status() request.Status {
	switch o {
	case AutoGranted, Approved:
		return request.StatusGranted
	case PolicyDenied, ApproverDenied:
		return request.StatusDenied
	case Expired:
		return request.StatusExpired
	}
	return request.StatusPending
}

// Outcomes lists every outcome.
func Outcomes() []Outcome {
	out := make([]Outcome, numOutcomes)
	for i := range out {
		out[i] = Outcome(i)
	}
	return out
}

// Mix weighs the outcomes: each gets its weight's share of the requests.
type Mix map[Outcome]int

// DefaultMix is mostly grants, with some of every other outcome.
func DefaultMix() Mix {
	return Mix{AutoGranted: 40, Approved: 20, PolicyDenied: 15, ApproverDenied: 10, Expired: 10, Pending: 5}
}

// Options say what to generate.
type Options struct {
	Requests int
	Mix      Mix // nil: DefaultMix
	Seed     uint64
	// Concurrency is how many requests are appended at once, each one's
	// events in order; default 64.
	Concurrency int
	// Span is how far back before now requests are made; default 24h.
	// Requests with votes are made within the last part of their flow's
	// deadline (votes count by when the stream stores them, which is now),
	// expired ones more than a deadline ago.
	Span time.Duration
}

// Request is one generated request.
type Request struct {
	ID          string
	Outcome     Outcome
	Requester   string // "domain/name"
	Action      string
	Resource    string
	Voters      []string // who voted, "domain/name", in order
	RequestedAt time.Time
	Events      int
}

// Summary is what Generate appended.
type Summary struct {
	Now      time.Time // the requests were made before this
	Requests []Request // in the order they were planned (not stream order)
	Events   int       // appended, the policy record included when this run wrote it
	Elapsed  time.Duration
}

// IDs lists the ids of the requests with outcome o, in plan order.
func (s *Summary) IDs(o Outcome) []string {
	var out []string
	for _, r := range s.Requests {
		if r.Outcome == o {
			out = append(out, r.ID)
		}
	}
	return out
}

// Rate is the events appended per second.
func (s *Summary) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Events) / s.Elapsed.Seconds()
}

// The sample identities that take part.
const (
	bot   = "deploy-bot" // bots
	dev   = "carol"      // developers
	leadA = "alice"      // sre-leads
	leadB = "bob"        // sre-leads
)

// Generate appends o.Requests histories to the audit stream of e, which
// should run no pipeline (writtest.Options{NoServe: true}): nothing else
// may append to the requests it makes. It records the policy set first, as
// the policy component does on start. It fails on the first event the fold
// would not accept, before appending it.
func Generate(ctx context.Context, e *writtest.Env, o Options) (*Summary, error) {
	people := map[string]*identity.Identity{}
	for _, n := range []string{bot, dev, leadA, leadB} {
		people[n] = e.Identity(n)
	}
	js, err := jetstream.New(e.NC)
	if err != nil {
		return nil, err
	}
	return run(ctx, js, e.Runtime, people, o)
}

type generator struct {
	o        Options
	now      time.Time
	js       jetstream.JetStream
	stream   string
	domain   string
	rt       *config.Runtime
	checker  events.Checker
	minter   *issuer.Issuer
	grants   consumers.GrantPolicy
	keys     map[identity.Role]nkeys.KeyPair // the components'
	people   map[string]person
	deadline time.Duration // of the review flow's first stage
	events   atomic.Int64
}

// person is a sample identity and its principal as the trust bundle
// verifies it (what the fold and the policies see).
type person struct {
	id  *identity.Identity
	key nkeys.KeyPair
	p   identity.Principal
}

func (p person) ref() events.PrincipalRef {
	return events.PrincipalRef{Domain: p.p.Domain, Name: p.p.Name}
}

func (p person) source() string { return events.PrincipalSource(p.p.Domain, p.p.Name) }

func run(ctx context.Context, js jetstream.JetStream, rt *config.Runtime, ids map[string]*identity.Identity, o Options) (*Summary, error) {
	g, err := setup(js, rt, ids, o)
	if err != nil {
		return nil, err
	}
	outcomes, err := plan(g.o.Mix, g.o.Requests, g.o.Seed)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := g.recordPolicy(ctx); err != nil {
		return nil, err
	}
	sum := &Summary{Now: g.now, Requests: make([]Request, len(outcomes))}
	var next atomic.Int64
	eg, ctx := errgroup.WithContext(ctx)
	for range min(g.o.Concurrency, max(len(outcomes), 1)) {
		eg.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(outcomes) {
					return nil
				}
				r, err := g.request(ctx, i, outcomes[i])
				if err != nil {
					return err
				}
				sum.Requests[i] = r
			}
		})
	}
	err = eg.Wait()
	sum.Events, sum.Elapsed = int(g.events.Load()), time.Since(start)
	return sum, err
}

// setup checks the options and loads what every request needs.
func setup(js jetstream.JetStream, rt *config.Runtime, ids map[string]*identity.Identity, o Options) (_ *generator, err error) {
	if o.Requests < 0 {
		return nil, errors.New("gen: negative number of requests")
	}
	if o.Mix == nil {
		o.Mix = DefaultMix()
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 64
	}
	if o.Span <= 0 {
		o.Span = 24 * time.Hour
	}
	keys := map[identity.Role]nkeys.KeyPair{}
	for role, kp := range map[identity.Role]nkeys.KeyPair{
		identity.RolePolicy: rt.PolicyKey, identity.RoleApproval: rt.ApprovalKey, identity.RoleIssuer: rt.IssuerKey,
	} {
		keys[role] = identity.Fast(kp)
	}
	m, err := issuer.New(keys[identity.RoleIssuer], rt.IssuerXKey)
	if err != nil {
		return nil, err
	}
	g := &generator{
		o: o, now: time.Now(), js: js, stream: rt.Config.Stream.Name, domain: rt.Config.Domain, rt: rt,
		checker: events.Checker{Bundle: rt.Bundle, MaxBody: rt.Config.Limits.MaxEventBytes},
		minter:  m, grants: grantPolicy(rt), keys: keys, people: map[string]person{},
	}
	if g.stream == "" {
		g.stream = consumers.DefaultStream
	}
	for name, id := range ids {
		p, err := rt.Bundle.VerifyUser(id.JWT, g.now)
		if err != nil {
			return nil, fmt.Errorf("gen: identity %s: %w", name, err)
		}
		key := identity.Fast(id.Key)
		g.people[name] = person{id: id, key: key, p: p}
	}
	// The review flow's deadline, as the policies resolve it, places the
	// requests that wait for votes in time.
	ev := g.evaluate(g.people[dev].p, &events.Requested{Action: "restart", Resource: "prod/web", Urgency: "normal"}, g.now)
	if ev.Outcome == events.OutcomeReview && ev.ExpiresAt != nil {
		g.deadline = ev.ExpiresAt.Sub(g.now)
	}
	for _, out := range []Outcome{Approved, ApproverDenied, Expired, Pending} {
		if o.Mix[out] > 0 && g.deadline <= 0 {
			return nil, fmt.Errorf("gen: %s requests need the policies to send %s's restart of prod/* to review, as the sample policies do", out, dev)
		}
	}
	return g, nil
}

// grantPolicy is the issuer's grant policy, filled in as consumers.NewIssuer does.
func grantPolicy(rt *config.Runtime) consumers.GrantPolicy {
	g := consumers.GrantPolicy{DefaultTTL: time.Duration(rt.Config.Grants.DefaultTTL), MaxTTL: time.Duration(rt.Config.Grants.MaxTTL)}
	if g.DefaultTTL == 0 {
		g.DefaultTTL = 15 * time.Minute
	}
	if g.MaxTTL == 0 {
		g.MaxTTL = time.Hour
	}
	g.BreakGlassMaxTTL = 15 * time.Minute
	return g
}

// plan gives each request its outcome: the mix's shares exactly (largest
// remainders), in an order shuffled by the seed.
func plan(mix Mix, n int, seed uint64) ([]Outcome, error) {
	total := 0
	for o, w := range mix {
		if o >= numOutcomes || w < 0 {
			return nil, fmt.Errorf("gen: bad mix entry %v: %d", o, w)
		}
		total += w
	}
	if total == 0 && n > 0 {
		return nil, errors.New("gen: the mix weighs nothing")
	}
	out := make([]Outcome, 0, n)
	type rest struct {
		o Outcome
		r int
	}
	var rests []rest
	for _, o := range Outcomes() {
		k := n * mix[o] / total
		for range k {
			out = append(out, o)
		}
		rests = append(rests, rest{o, n * mix[o] % total})
	}
	for len(out) < n {
		best := 0
		for i, r := range rests {
			if r.r > rests[best].r {
				best = i
			}
		}
		out = append(out, rests[best].o)
		rests[best].r = -1
	}
	rand.New(rand.NewPCG(seed, 0)).Shuffle(n, func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out, nil
}

// newID is a UUIDv7 for time t with random bits from rng, as a requester
// with that clock would make.
func newID(t time.Time, rng *rand.Rand) string {
	var u uuid.UUID
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(t.UnixMilli()))
	copy(u[:6], ms[2:])
	binary.BigEndian.PutUint64(u[8:], rng.Uint64())
	r := rng.Uint32()
	u[6], u[7] = 0x70|byte(r>>8)&0x0f, byte(r)
	u[8] = 0x80 | u[8]&0x3f
	return u.String()
}

// between is a duration in [lo, hi).
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}
