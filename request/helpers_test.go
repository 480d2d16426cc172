package request_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/request"
)

const reqID = "0b7e6f1a-3c2d-4e5f-8a9b-0c1d2e3f4a5b"

var (
	t0       = time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	deadline = t0.Add(30 * time.Minute)
)

func principal(t testing.TB, name string, groups ...string) identity.Principal {
	t.Helper()
	kp, err := nkeys.CreateUser()
	require.NoError(t, err)
	key, err := kp.PublicKey()
	require.NoError(t, err)
	return identity.Principal{Domain: "acme", Name: name, Key: key, Groups: groups}
}

// people are the principals of the tests: carol requests, alice and bob
// are SRE leads, dave is a developer who approves nothing.
type people struct{ carol, alice, bob, dave identity.Principal }

func newPeople(t testing.TB) people {
	t.Helper()
	return people{
		carol: principal(t, "carol", "developers"),
		alice: principal(t, "alice", "sre-leads"),
		bob:   principal(t, "bob", "sre-leads"),
		dave:  principal(t, "dave", "developers"),
	}
}

// history builds a request's records the way Inspect would produce them:
// sequence numbers, distinct digests, and each event chained to the last.
type history struct {
	t       testing.TB
	records []events.Record
}

func newHistory(t testing.TB) *history { return &history{t: t} }

// event is one record to add.
type event struct {
	kind events.Kind
	data any
	at   time.Time
	by   *identity.Principal // for requests and votes
	err  error               // Inspect's verdict
	prev *string             // overrides the chain
	role identity.Role       // the component that signed it (refusals)
}

func (h *history) add(e event) events.Record {
	h.t.Helper()
	seq := uint64(len(h.records) + 1)
	prev := ""
	if len(h.records) > 0 {
		prev = h.records[len(h.records)-1].Digest
	}
	if e.prev != nil {
		prev = *e.prev
	}
	setPrev(h.t, e.data, prev)
	if g, ok := e.data.(*events.Granted); ok && g.Evidence == "" {
		g.Evidence = prev // what the issuer records: the event it grants on
	}
	at := e.at
	if at.IsZero() {
		at = t0.Add(time.Duration(seq) * time.Second)
	}
	r := events.Record{
		Message:   events.Message{Subject: events.Subject("acme", reqID, e.kind), Seq: seq, Time: at},
		Domain:    "acme",
		RequestID: reqID,
		Kind:      e.kind,
		Digest:    fmt.Sprintf("sha256:%064x", seq),
		Envelope:  events.Envelope{Type: e.kind.Type(), Subject: reqID, Time: at},
		Data:      e.data,
		Principal: e.by,
		Role:      e.role,
		Err:       e.err,
	}
	h.records = append(h.records, r)
	return r
}

func setPrev(t testing.TB, data any, prev string) {
	t.Helper()
	if data != nil && !events.SetPrev(data, prev) {
		t.Fatalf("no prev on %T", data)
	}
}

// fold applies the history and fails the test on any refusal.
func (h *history) fold() request.State {
	h.t.Helper()
	s, errs := request.Fold(h.records)
	require.Empty(h.t, errs, "the history is legal")
	return s
}

func (h *history) last() events.Record { return h.records[len(h.records)-1] }

// Events of each kind.

func requested(p *identity.Principal, ttl int64) event {
	return event{kind: events.KindRequested, by: p, at: t0, data: &events.Requested{
		Domain:    "acme",
		Requester: events.PrincipalRef{Domain: p.Domain, Name: p.Name},
		Action:    "restart", Resource: "prod/db", Urgency: "normal", TTLSeconds: ttl,
	}}
}

func allowed(maxTTL int64) event {
	return event{kind: events.KindEvaluated, data: &events.Evaluated{Outcome: events.OutcomeAllow, MaxTTLSeconds: maxTTL}}
}

func denied() event {
	return event{kind: events.KindEvaluated, data: &events.Evaluated{Outcome: events.OutcomeDeny, Reasons: []string{"no-prod-database-drop"}}}
}

// twoLeads is the sample flow: two SRE leads, any one can deny.
func twoLeads() events.Flow {
	return events.Flow{Name: "two-sre-leads", Stages: []events.Stage{{Name: "leads", Groups: []string{"sre-leads"}, Required: 2, DeadlineSeconds: 1800}}}
}

func review(maxTTL int64, flows ...events.Flow) event {
	if len(flows) == 0 {
		flows = []events.Flow{twoLeads()}
	}
	exp := deadline
	return event{kind: events.KindEvaluated, data: &events.Evaluated{Outcome: events.OutcomeReview, Flows: flows, ExpiresAt: &exp, MaxTTLSeconds: maxTTL}}
}

// vote is p's answer to the request event of h.
func (h *history) vote(p *identity.Principal, approve bool, reason string) event {
	h.t.Helper()
	require.NotEmpty(h.t, h.records, "a vote answers a request")
	d := events.DecisionDeny
	if approve {
		d = events.DecisionApprove
	}
	return event{kind: events.KindVoted, by: p, data: &events.Voted{
		Voter: events.PrincipalRef{Domain: p.Domain, Name: p.Name}, Decision: d, Reason: reason,
		RequestDigest: h.records[0].Digest,
	}}
}

func approved(by ...identity.Principal) event {
	var refs []events.PrincipalRef
	for _, p := range by {
		refs = append(refs, events.PrincipalRef{Domain: p.Domain, Name: p.Name})
	}
	return event{kind: events.KindApproved, data: &events.Approved{Approvers: refs}}
}

func deniedBy(by ...identity.Principal) event {
	var refs []events.PrincipalRef
	for _, p := range by {
		refs = append(refs, events.PrincipalRef{Domain: p.Domain, Name: p.Name})
	}
	return event{kind: events.KindDenied, data: &events.Denied{By: refs}}
}

func expired(at time.Time) event {
	return event{kind: events.KindExpired, at: at, data: &events.Expired{Deadline: deadline}}
}

func granted(holder string, ttl time.Duration) event {
	nbf := t0.Add(time.Minute)
	return event{kind: events.KindGranted, data: &events.Granted{
		TokenHash: "sha256:ab", Holder: holder, NotBefore: nbf, ExpiresAt: nbf.Add(ttl),
	}}
}

func rejected(code string) event {
	return event{kind: events.KindRejected, data: &events.Rejected{RefSeq: 1, Code: code, Reason: "refused"}}
}

func refused(refSeq uint64, code string) event {
	return event{kind: events.KindRefused, data: &events.Refused{RefSeq: refSeq, RefKind: "voted", Code: code, Reason: "refused"}}
}

func counted(refSeq uint64, p identity.Principal) event {
	return event{kind: events.KindCounted, data: &events.Counted{RefSeq: refSeq, Voter: events.PrincipalRef{Domain: p.Domain, Name: p.Name}}}
}

// issuerRefused is the issuer's refusal of the record at refSeq: its
// answer to a decision in favour it will not grant (a lock).
func issuerRefused(refSeq uint64, refKind, code string) event {
	return event{kind: events.KindRefused, role: identity.RoleIssuer, data: &events.Refused{RefSeq: refSeq, RefKind: refKind, Code: code, Reason: "refused"}}
}

// breakGlass is a break-glass evaluation: allowed at once, with flows to
// review it after the fact by deadline.
func breakGlass(flows ...events.Flow) event {
	if len(flows) == 0 {
		flows = []events.Flow{twoLeads()}
	}
	exp := deadline
	return event{kind: events.KindEvaluated, data: &events.Evaluated{Outcome: events.OutcomeAllow, BreakGlass: true, Flows: flows, ExpiresAt: &exp}}
}
