package audit_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/policy"
)

// The helpers here tamper with copies of a real run's trail, or craft
// histories on top of one, with the run's real keys.

// keyed is a real run, made once like sharedRun, with what signing needs
// beyond its runtime's keys: the sample principals' identities and the
// domain's account key, loaded while the run's setup is on disk. (A run's
// directory goes with the test that made it: sharedRun's env can no longer
// load them once that test is over.)
type keyed struct {
	*run
	who     map[string]*identity.Identity
	account nkeys.KeyPair
}

var (
	keyedOnce sync.Once
	keyedRun  *keyed
)

func keyedShared(t *testing.T) *keyed {
	keyedOnce.Do(func() {
		r := newRun(t)
		k := &keyed{run: r, who: map[string]*identity.Identity{}}
		for _, s := range config.SampleIdentities {
			k.who[s.Name] = r.env.Identity(s.Name)
		}
		var err error
		k.account, err = identity.LoadSeed(filepath.Join(r.env.Dir, "keys", "account.nk"))
		require.NoError(t, err)
		keyedRun = k
	})
	if keyedRun == nil {
		t.Fatal("the keyed run failed")
	}
	return keyedRun
}

// cloneTrail deep-copies messages, bodies and header maps included, so that
// no tampering reaches the shared run.
func cloneTrail(msgs []events.Message) []events.Message {
	out := make([]events.Message, len(msgs))
	for i, m := range msgs {
		m.Body = bytes.Clone(m.Body)
		if m.Header != nil {
			h := make(map[string][]string, len(m.Header))
			for k, v := range m.Header {
				h[k] = slices.Clone(v)
			}
			m.Header = h
		}
		out[i] = m
	}
	return out
}

// inspect reads a message against the run's bundle.
func inspect(r *keyed, m events.Message) events.Record {
	return events.Checker{Bundle: r.env.Runtime.Bundle}.Inspect(m, m.Time)
}

// locate returns the index in msgs of the first message of the named
// request of kind that match accepts (nil accepts any).
func locate(t testing.TB, r *keyed, msgs []events.Message, name string, kind events.Kind, match func(events.Record) bool) int {
	t.Helper()
	for i, m := range msgs {
		rec := inspect(r, m)
		if rec.RequestID == r.ids[name] && rec.Kind == kind && (match == nil || match(rec)) {
			return i
		}
	}
	t.Fatalf("no %s of %q in the trail", kind, name)
	return -1
}

// voteBy returns the index of name's vote on the request named req.
func voteBy(t testing.TB, r *keyed, msgs []events.Message, req, name string) int {
	t.Helper()
	return locate(t, r, msgs, req, events.KindVoted, func(rec events.Record) bool {
		return rec.Err == nil && rec.Principal.Name == name
	})
}

func isCheckpoint(m events.Message) bool {
	_, _, k, err := events.ParseSubject(m.Subject)
	return err == nil && k == events.KindCheckpoint
}

// lastCheckpoint returns the index of the trail's last checkpoint.
func lastCheckpoint(t testing.TB, msgs []events.Message) int {
	t.Helper()
	for i := len(msgs) - 1; i >= 0; i-- {
		if isCheckpoint(msgs[i]) {
			return i
		}
	}
	t.Fatal("no checkpoint in the trail")
	return -1
}

// headOf is the checkpoint at msgs[i] as a witness holds it.
func headOf(t testing.TB, r *keyed, msgs []events.Message, i int) audit.Head {
	t.Helper()
	rec := inspect(r, msgs[i])
	require.NoError(t, rec.Err)
	c, ok := rec.Data.(*events.Checkpoint)
	require.True(t, ok, "message %d is a %s", msgs[i].Seq, rec.Kind)
	return audit.Head{Seq: rec.Seq, Digest: rec.Digest, Checkpoint: *c, Source: "witness globex"}
}

// roleKey is the run's key for a component role.
func roleKey(r *keyed, role identity.Role) nkeys.KeyPair {
	rt := r.env.Runtime
	return map[identity.Role]nkeys.KeyPair{
		identity.RolePolicy: rt.PolicyKey, identity.RoleApproval: rt.ApprovalKey, identity.RoleIssuer: rt.IssuerKey,
		identity.RoleRedeemer: rt.RedeemerKey, identity.RoleAuditor: rt.AuditorKey,
	}[role]
}

// keyring is every key that signs in the run's domain, by public key: its
// components and the sample principals, and the extra identities given.
func keyring(t testing.TB, r *keyed, extra ...*identity.Identity) map[string]nkeys.KeyPair {
	t.Helper()
	ring := map[string]nkeys.KeyPair{}
	add := func(kp nkeys.KeyPair) {
		pub, err := kp.PublicKey()
		require.NoError(t, err)
		ring[pub] = kp
	}
	for _, role := range identity.Roles {
		add(roleKey(r, role))
	}
	for _, id := range r.who {
		add(id.Key)
	}
	for _, id := range extra {
		add(id.Key)
	}
	return ring
}

// newPrincipal issues a new identity in the run's domain, signed by its
// real account key: a principal the bundle trusts, valid over the run.
func newPrincipal(t testing.TB, r *keyed, name string, groups ...string) *identity.Identity {
	t.Helper()
	creds, err := identity.IssueUser(r.account, identity.UserSpec{
		Domain: r.env.Domain, Name: name, Groups: groups, TTL: 48 * time.Hour, Now: time.Now().Add(-time.Hour),
	})
	require.NoError(t, err)
	id, err := identity.ParseCreds(creds)
	require.NoError(t, err)
	return id
}

// ordinal recovers the ordinal an event's message id was made with.
func ordinal(env events.Envelope, id string, k events.Kind) string {
	base := env.ID[:max(strings.LastIndex(env.ID, "."), 0)]
	return strings.TrimPrefix(strings.TrimPrefix(base, events.MsgID(id, k, "")), ".")
}

// reseal signs m again with kp once edit has changed its draft (its data,
// typed, its event time, its source); the subject and ordinal stay, and so
// do the sequence and stored time.
func reseal(t testing.TB, m events.Message, kp nkeys.KeyPair, edit func(d *events.Draft)) events.Message {
	t.Helper()
	domain, id, kind, err := events.ParseSubject(m.Subject)
	require.NoError(t, err)
	var env events.Envelope
	require.NoError(t, json.Unmarshal(m.Body, &env))
	data := events.NewData(kind)
	require.NoError(t, json.Unmarshal(env.Data, data))
	d := events.Draft{Domain: domain, RequestID: id, Kind: kind, Ordinal: ordinal(env, id, kind), Source: env.Source, Time: env.Time, Data: data}
	edit(&d)
	out, err := events.Seal(d, kp)
	require.NoError(t, err)
	require.Equal(t, m.Subject, out.Subject)
	return events.Message{Subject: out.Subject, Seq: m.Seq, Time: m.Time, Header: out.Header(), Body: out.Body}
}

// resign signs m's body, unchanged, with kp instead.
func resign(t testing.TB, m events.Message, kp nkeys.KeyPair) events.Message {
	t.Helper()
	pub, err := kp.PublicKey()
	require.NoError(t, err)
	sig, err := kp.Sign(m.Body)
	require.NoError(t, err)
	m.Header = maps.Clone(m.Header)
	if m.Header == nil {
		m.Header = map[string][]string{}
	}
	m.Header[events.HeaderSigner] = []string{pub}
	m.Header[events.HeaderSignature] = []string{base64.RawURLEncoding.EncodeToString(sig)}
	return m
}

// rechain re-seals every later message of msgs[i]'s request, each with the
// key that signed it (from ring), so that each names the one before it
// again: the rewrite of someone who holds all those keys. A grant's
// evidence follows its prev; an unsigned message, which names nothing,
// stays.
func rechain(t testing.TB, msgs []events.Message, i int, ring map[string]nkeys.KeyPair) {
	t.Helper()
	domain, id, _, err := events.ParseSubject(msgs[i].Subject)
	require.NoError(t, err)
	prev := events.Digest(msgs[i].Body)
	for j := i + 1; j < len(msgs); j++ {
		if d, rid, _, err := events.ParseSubject(msgs[j].Subject); err != nil || d != domain || rid != id {
			continue
		}
		if signer := msgs[j].Header[events.HeaderSigner]; len(signer) > 0 {
			kp := ring[signer[0]]
			require.NotNil(t, kp, "no key for message %d", msgs[j].Seq)
			msgs[j] = reseal(t, msgs[j], kp, func(d *events.Draft) {
				if g, ok := d.Data.(*events.Granted); ok && g.Evidence == g.Prev {
					g.Evidence = prev
				}
				events.SetPrev(d.Data, prev)
			})
		}
		prev = events.Digest(msgs[j].Body)
	}
}

// recheckpoint makes every checkpoint in msgs again over the messages as
// they now are, signed with the real auditor key and chained: how someone
// holding the auditor's key hides a rewrite from the stream itself.
func recheckpoint(t testing.TB, r *keyed, msgs []events.Message) {
	t.Helper()
	prev := ""
	for i, m := range msgs {
		if !isCheckpoint(m) {
			continue
		}
		msgs[i] = reseal(t, m, r.env.Runtime.AuditorKey, func(d *events.Draft) {
			c := d.Data.(*events.Checkpoint)
			tree := audit.NewTree()
			for _, l := range msgs[:c.TreeSize] {
				require.NoError(t, tree.Append(l))
			}
			root, err := tree.Root()
			require.NoError(t, err)
			c.Prev, c.Root, c.Frontier = prev, root, tree.Frontier()
			c.FirstSeq, c.LastSeq, c.LastTime = tree.FirstSeq(), tree.LastSeq(), msgs[c.TreeSize-1].Time
		})
		prev = events.Digest(msgs[i].Body)
	}
}

// errorsOf returns a report's error findings.
func errorsOf(rep *audit.Report) []audit.Finding {
	var out []audit.Finding
	for _, f := range rep.Findings {
		if f.Severity == audit.SeverityError {
			out = append(out, f)
		}
	}
	return out
}

// checksOf lists the checks of findings, sorted, once each.
func checksOf(fs []audit.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Check)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// fingerprint says what each message is, to tell that a trail is unchanged.
func fingerprint(msgs []events.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = fmt.Sprintf("%d %s %s %s %v", m.Seq, m.Time.Format(time.RFC3339Nano), m.Subject, events.Digest(m.Body), m.Header)
	}
	return out
}

func logFindings(t testing.TB, rep *audit.Report) {
	t.Helper()
	for _, f := range rep.Findings {
		t.Log(f)
	}
}

// crafter appends hand-made histories to a copy of a real run's trail:
// every event sealed with the real key of whoever emits it, chained to the
// last message of its request, stored at the next sequence a moment after
// the message before.
type crafter struct {
	t     testing.TB
	r     *keyed
	msgs  []events.Message
	clock time.Time
	reqs  map[string]*crafted
	set   *policy.Set // what evaluate decides by; nil: the run's policies
}

type crafted struct {
	who    *identity.Identity
	data   *events.Requested
	digest string // of the requested event
	last   string // of the history's last message
	grant  *events.Granted
}

func newCrafter(t testing.TB, r *keyed) *crafter {
	msgs := cloneTrail(r.msgs)
	return &crafter{t: t, r: r, msgs: msgs, clock: msgs[len(msgs)-1].Time.Add(time.Second), reqs: map[string]*crafted{}}
}

// advance moves the clock on.
func (c *crafter) advance(d time.Duration) { c.clock = c.clock.Add(d) }

// seal appends an event of id signed by kp, chained to the last message of
// a request crafted here, and returns its sequence.
func (c *crafter) seal(id string, kind events.Kind, kp nkeys.KeyPair, source string, data any) uint64 {
	c.t.Helper()
	q := c.reqs[id]
	if q != nil {
		events.SetPrev(data, q.last)
	}
	seq := c.msgs[len(c.msgs)-1].Seq + 1
	out, err := events.Seal(events.Draft{
		Domain: c.r.env.Domain, RequestID: id, Kind: kind, Ordinal: fmt.Sprint(seq), Source: source, Time: c.clock, Data: data,
	}, kp)
	require.NoError(c.t, err)
	c.msgs = append(c.msgs, events.Message{Subject: out.Subject, Seq: seq, Time: c.clock, Header: out.Header(), Body: out.Body})
	c.advance(time.Millisecond)
	if q != nil {
		q.last = events.Digest(out.Body)
	}
	return seq
}

// as appends a principal's event.
func (c *crafter) as(id string, kind events.Kind, who *identity.Identity, data any) uint64 {
	c.t.Helper()
	return c.seal(id, kind, who.Key, "writ://"+who.Principal.Domain+"/principals/"+who.Principal.Name, data)
}

// emit appends a component's event, signed with the key of the role
// entitled to its kind (the approval component's for a refusal).
func (c *crafter) emit(id string, kind events.Kind, data any) uint64 {
	c.t.Helper()
	role := events.RoleFor(kind)
	if kind == events.KindRefused {
		role = identity.RoleApproval
	}
	return c.seal(id, kind, roleKey(c.r, role), "writ://"+c.r.env.Domain+"/"+string(role), data)
}

// request appends a request by the named principal and returns its id.
func (c *crafter) request(name string, s client.Spec) string {
	c.t.Helper()
	who := c.r.who[name]
	uid, err := uuid.NewV7()
	require.NoError(c.t, err)
	id := uid.String()
	xkey, err := issuer.HolderXKey(who.Key, id)
	require.NoError(c.t, err)
	xpub, err := xkey.PublicKey()
	require.NoError(c.t, err)
	if s.Urgency == "" {
		s.Urgency = "normal"
	}
	d := &events.Requested{
		Domain: c.r.env.Domain, Requester: events.PrincipalRef{Domain: who.Principal.Domain, Name: who.Principal.Name},
		Identity: who.JWT, Action: s.Action, Resource: s.Resource, Params: s.Params, Urgency: s.Urgency,
		Reason: s.Reason, Ticket: s.Ticket, TTLSeconds: int64(s.TTL / time.Second), HolderXKey: xpub,
	}
	c.reqs[id] = &crafted{who: who, data: d}
	c.as(id, events.KindRequested, who, d)
	c.reqs[id].digest = c.reqs[id].last
	return id
}

// evaluate appends the policy's evaluation of the request and returns it.
func (c *crafter) evaluate(id string) *events.Evaluated {
	c.t.Helper()
	ev := c.decide(id)
	c.emit(id, events.KindEvaluated, ev)
	return ev
}

// decide is the policy's evaluation of the request, as the policy
// component makes it now.
func (c *crafter) decide(id string) *events.Evaluated {
	c.t.Helper()
	q := c.reqs[id]
	p, err := c.r.env.Runtime.Bundle.VerifyUser(q.who.JWT, c.clock)
	require.NoError(c.t, err)
	set := c.set
	if set == nil {
		set = c.r.env.Runtime.Policies
	}
	return policy.Evaluate(set, c.r.env.Runtime.Flows, policy.Input{
		Principal: p, Action: q.data.Action, Domain: c.r.env.Domain, Resource: q.data.Resource,
		Context: policy.Context{
			Urgency: q.data.Urgency, Reason: q.data.Reason, Ticket: q.data.Ticket, Origin: p.Domain,
			TTL: time.Duration(q.data.TTLSeconds) * time.Second, Params: q.data.Params, Time: c.clock,
		},
	}, nil)
}

// record appends a policy version, with the run's flows, as the policy
// component records what it loads.
func (c *crafter) record(set *policy.Set) uint64 {
	c.t.Helper()
	f := c.r.env.Runtime.Flows
	return c.emit(events.PolicyID(set.Digest(), f.Digest()), events.KindPolicy, &events.Policy{
		PolicyDigest: set.Digest(), PolicySource: string(set.Source()), FlowsDigest: f.Digest(), FlowsSource: string(f.Source()),
	})
}

// vote appends name's answer to the request.
func (c *crafter) vote(id, name string, approve bool) uint64 {
	c.t.Helper()
	who := c.r.who[name]
	d := &events.Voted{
		Domain: c.r.env.Domain, Voter: events.PrincipalRef{Domain: who.Principal.Domain, Name: who.Principal.Name},
		Identity: who.JWT, Decision: events.DecisionApprove, RequestDigest: c.reqs[id].digest,
	}
	if !approve {
		d.Decision, d.Reason = events.DecisionDeny, "not now"
	}
	return c.as(id, events.KindVoted, who, d)
}

// grant mints a real grant for the request with the run's issuer keys,
// valid from nbf for ttl, and appends it.
func (c *crafter) grant(id string, nbf time.Time, ttl time.Duration) uint64 {
	c.t.Helper()
	q := c.reqs[id]
	is, err := issuer.New(c.r.env.Runtime.IssuerKey, c.r.env.Runtime.IssuerXKey)
	require.NoError(c.t, err)
	token, claims, err := is.Mint(issuer.Constraints{
		RequestID: id, Holder: q.who.Principal.Key, Audience: c.r.env.Domain, Action: q.data.Action,
		Resource: q.data.Resource, ParamsDigest: issuer.ParamsDigest(q.data.Params), Evidence: q.last,
		NotBefore: nbf, TTL: ttl,
	})
	require.NoError(c.t, err)
	sealed, err := is.Seal(token, q.data.HolderXKey)
	require.NoError(c.t, err)
	q.grant = &events.Granted{
		TokenHash: issuer.TokenHash(token), Sealed: sealed, SealedBy: is.XKey(), Holder: claims.Holder,
		NotBefore: claims.NotBefore, ExpiresAt: claims.Expires, Evidence: q.last,
	}
	return c.emit(id, events.KindGranted, q.grant)
}

// redeem appends the redemption of the request's grant.
func (c *crafter) redeem(id string) uint64 {
	c.t.Helper()
	g := c.reqs[id].grant
	return c.emit(id, events.KindRedeemed, &events.Redeemed{
		Outcome: events.RedemptionRedeemed, TokenHash: g.TokenHash, Holder: g.Holder, Service: "deployer",
	})
}

// verify verifies the trail as crafted.
func (c *crafter) verify(o audit.Options) *audit.Report {
	c.t.Helper()
	o.Bundle, o.Stream = c.r.env.Runtime.Bundle, "WRIT"
	rep := verify(c.msgs, o)
	logFindings(c.t, rep)
	return rep
}
