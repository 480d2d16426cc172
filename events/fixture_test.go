package events_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
)

// reqID is the request id of every test event: a lower-case UUID, as the
// schema requires.
const reqID = "0b7e6f1a-3c2d-4e5f-8a9b-0c1d2e3f4a5b"

// t0 is the time of every test event; identities are valid around it.
var t0 = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

// fixture is a trust bundle of two domains, acme and other, with an account
// key and one key per component each, and principals issued by them.
type fixture struct {
	bundle *identity.Bundle

	acct, otherAcct                nkeys.KeyPair
	policy, approval, issuer       nkeys.KeyPair // acme's components
	redeemer                       nkeys.KeyPair // acme's grant-consuming service
	auditor                        nkeys.KeyPair // acme's checkpoint signer
	auditorPub                     string
	otherPolicy, otherIssuer       nkeys.KeyPair // other's components
	stranger                       nkeys.KeyPair // a server key no domain trusts
	holderXKey                     string
	alice, bob                     *identity.Identity // acme principals, signed by acme's account
	ghost                          *identity.Identity // claims domain ghost, which the bundle does not know
	impostor                       *identity.Identity // claims acme, signed by other's account
	expired, notYet, noDomain, fwd *identity.Identity
}

func mustKey(t testing.TB, create func() (nkeys.KeyPair, error)) nkeys.KeyPair {
	t.Helper()
	kp, err := create()
	require.NoError(t, err)
	return kp
}

func pub(t testing.TB, kp nkeys.KeyPair) string {
	t.Helper()
	p, err := kp.PublicKey()
	require.NoError(t, err)
	return p
}

// issue returns the parsed identity IssueUser makes.
func issue(t testing.TB, account nkeys.KeyPair, s identity.UserSpec) *identity.Identity {
	t.Helper()
	creds, err := identity.IssueUser(account, s)
	require.NoError(t, err)
	id, err := identity.ParseCreds(creds)
	require.NoError(t, err)
	return id
}

// rawUser signs a user JWT built by edit, for identities IssueUser cannot make.
func rawUser(t testing.TB, signer nkeys.KeyPair, edit func(uc *jwt.UserClaims)) *identity.Identity {
	t.Helper()
	user := mustKey(t, nkeys.CreateUser)
	uc := jwt.NewUserClaims(pub(t, user))
	edit(uc)
	token, err := uc.Encode(signer)
	require.NoError(t, err)
	return &identity.Identity{JWT: token, Key: user, Principal: identity.Principal{Name: uc.Name, Key: uc.Subject}}
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{
		acct:        mustKey(t, nkeys.CreateAccount),
		otherAcct:   mustKey(t, nkeys.CreateAccount),
		policy:      mustKey(t, nkeys.CreateServer),
		approval:    mustKey(t, nkeys.CreateServer),
		issuer:      mustKey(t, nkeys.CreateServer),
		redeemer:    mustKey(t, nkeys.CreateServer),
		auditor:     mustKey(t, nkeys.CreateServer),
		otherPolicy: mustKey(t, nkeys.CreateServer),
		otherIssuer: mustKey(t, nkeys.CreateServer),
		stranger:    mustKey(t, nkeys.CreateServer),
	}
	f.holderXKey = pub(t, mustKey(t, nkeys.CreateCurveKeys))
	f.auditorPub = pub(t, f.auditor)
	otherApproval := mustKey(t, nkeys.CreateServer)
	f.bundle = &identity.Bundle{Domains: map[string]*identity.Domain{
		"acme": {
			Accounts: []string{pub(t, f.acct)},
			Components: map[identity.Role][]string{
				identity.RolePolicy:   {pub(t, f.policy)},
				identity.RoleApproval: {pub(t, f.approval)},
				identity.RoleIssuer:   {pub(t, f.issuer)},
				identity.RoleRedeemer: {pub(t, f.redeemer)},
				identity.RoleAuditor:  {f.auditorPub},
			},
		},
		"other": {
			Accounts: []string{pub(t, f.otherAcct)},
			Components: map[identity.Role][]string{
				identity.RolePolicy:   {pub(t, f.otherPolicy)},
				identity.RoleApproval: {pub(t, otherApproval)},
				identity.RoleIssuer:   {pub(t, f.otherIssuer)},
			},
		},
	}}
	require.NoError(t, f.bundle.Validate())

	f.alice = issue(t, f.acct, identity.UserSpec{Domain: "acme", Name: "alice", Groups: []string{"sre-leads"}, TTL: 24 * time.Hour, Now: t0})
	f.bob = issue(t, f.acct, identity.UserSpec{Domain: "acme", Name: "bob", Groups: []string{"sre-leads"}, Now: t0})
	f.ghost = issue(t, f.acct, identity.UserSpec{Domain: "ghost", Name: "casper", Now: t0})
	f.impostor = issue(t, f.otherAcct, identity.UserSpec{Domain: "acme", Name: "alice", Now: t0})
	f.expired = issue(t, f.acct, identity.UserSpec{Domain: "acme", Name: "old", TTL: time.Hour, Now: t0.Add(-2 * time.Hour)})
	f.notYet = rawUser(t, f.acct, func(uc *jwt.UserClaims) {
		uc.Name = "early"
		uc.Tags.Add(identity.TagDomain + "acme")
		uc.NotBefore = t0.Add(time.Hour).Unix()
	})
	f.noDomain = rawUser(t, f.acct, func(uc *jwt.UserClaims) { uc.Name = "nowhere" })
	// fwd is signed by a signing key on behalf of acme's account: Writ
	// trusts only the account keys listed for a domain.
	signing := mustKey(t, nkeys.CreateAccount)
	f.fwd = rawUser(t, signing, func(uc *jwt.UserClaims) {
		uc.Name = "delegated"
		uc.Tags.Add(identity.TagDomain + "acme")
		uc.IssuerAccount = pub(t, f.acct)
	})
	return f
}

// requested is a fully populated request by id, for reqID.
func (f *fixture) requested(id *identity.Identity, domain, name string) *events.Requested {
	return &events.Requested{
		Domain:     "acme",
		Requester:  events.PrincipalRef{Domain: domain, Name: name},
		Identity:   id.JWT,
		Action:     "restart",
		Resource:   "prod/db",
		Params:     map[string]string{"replica": "2"},
		Urgency:    "high",
		Reason:     "stuck replication",
		Ticket:     "OPS-1234",
		TTLSeconds: 600,
		HolderXKey: f.holderXKey,
	}
}

// sample returns fully populated data for each kind: every optional field
// set, so that a schema that forgot a field refuses it.
func (f *fixture) sample(k events.Kind) any {
	const d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	const d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	deadline := t0.Add(30 * time.Minute)
	alice := events.PrincipalRef{Domain: "acme", Name: "alice"}
	bob := events.PrincipalRef{Domain: "acme", Name: "bob"}
	switch k {
	case events.KindRequested:
		r := f.requested(f.alice, "acme", "alice")
		return r
	case events.KindRejected:
		return &events.Rejected{Prev: d1, RefSeq: 1, RefDigest: d1, Code: "untrusted-key", Reason: "identity: signed by a key not trusted for its domain"}
	case events.KindEvaluated:
		return &events.Evaluated{
			Prev:          d1,
			Outcome:       events.OutcomeReview,
			Reasons:       []string{"developers-restart-prod"},
			Errors:        []string{"while evaluating policy x: attribute not found"},
			PolicyDigest:  d1,
			FlowsDigest:   d2,
			Principal:     events.EvaluatedPrincipal{Domain: "acme", Name: "alice", Key: f.alice.Principal.Key, Groups: []string{"sre-leads"}},
			Context:       map[string]any{"urgency": "high", "ttl_seconds": 600.0},
			MaxTTLSeconds: 1800,
			BreakGlass:    true,
			Flows: []events.Flow{{
				Name:       "two-sre-leads",
				DenyQuorum: 1,
				Stages: []events.Stage{{
					Name: "leads", Groups: []string{"sre-leads"}, Principals: []string{"acme/carol"},
					Required: 2, DeadlineSeconds: 1800,
				}},
			}},
			ExpiresAt:      &deadline,
			StateRevisions: map[string]uint64{"acme.prod.db": 12, "acme._domain": 0},
		}
	case events.KindVoted:
		return &events.Voted{Prev: d1, Domain: "acme", Voter: bob, Identity: f.bob.JWT, Decision: events.DecisionApprove, Reason: "looks fine", RequestDigest: d2}
	case events.KindApproved:
		return &events.Approved{Prev: d1, Approvers: []events.PrincipalRef{alice, bob}}
	case events.KindDenied:
		return &events.Denied{Prev: d1, By: []events.PrincipalRef{bob}, Reason: "not during the freeze"}
	case events.KindExpired:
		return &events.Expired{Prev: d1, Deadline: deadline}
	case events.KindGranted:
		return &events.Granted{
			Prev:       d1,
			TokenHash:  d2,
			Sealed:     "c2VhbGVkIGdyYW50",
			SealedBy:   f.holderXKey,
			Holder:     f.alice.Principal.Key,
			NotBefore:  t0,
			ExpiresAt:  t0.Add(10 * time.Minute),
			Evidence:   d1,
			BreakGlass: true,
		}
	case events.KindRefused:
		return &events.Refused{Prev: d1, RefSeq: 4, RefKind: "voted", RefSigner: f.alice.Principal.Key, Code: "duplicate-vote", Reason: "request: voter has already answered"}
	case events.KindRedeemed:
		return &events.Redeemed{Prev: d1, Outcome: events.RedemptionRedeemed, TokenHash: d2, Holder: f.alice.Principal.Key, Service: "db-operator"}
	case events.KindRevoked:
		return &events.Revoked{Prev: d1, By: bob, Reason: "wrong database"}
	case events.KindRevoke:
		return &events.Revoke{Prev: d1, Domain: "acme", By: bob, Identity: f.bob.JWT, Reason: "wrong database"}
	case events.KindLock:
		return &events.Lock{Prev: d1, Domain: "acme", By: bob, Identity: f.bob.JWT, Target: events.LockTarget{Type: events.LockPrincipal, Name: "acme/carol"}, Reason: "laptop stolen"}
	case events.KindPolicy:
		return &events.Policy{Prev: "", PolicyDigest: d1, PolicySource: "permit (principal, action, resource);", FlowsDigest: d2, FlowsSource: `{"flows": {}}`}
	case events.KindCheckpoint:
		return &events.Checkpoint{Prev: d1, Stream: "WRIT", TreeSize: 7, FirstSeq: 1, LastSeq: 7, LastTime: t0, Root: d2, Frontier: []string{d1, d2}}
	case events.KindWitnessed:
		return &events.Witnessed{Prev: "", Domain: "globex", Seq: 9, Subject: "writ.globex." + events.CheckpointID("globex") + ".checkpoint",
			Signer: f.auditorPub, Signature: strings.Repeat("A", 86), Checkpoint: "{}"}
	case events.KindAlerted:
		return &events.Alerted{Prev: d1, Alert: events.AlertReviewDenied, Reason: "INC-7: the review denied the break-glass grant; revoked"}
	case events.KindReviewed:
		// A denial: the outcome with the most fields (an approval names
		// approvers, and TestReviewedVersions has one).
		return &events.Reviewed{Prev: d1, Outcome: events.ReviewDenied, By: []events.PrincipalRef{alice}, Reason: "no incident at that time"}
	case events.KindEscalated:
		return &events.Escalated{Prev: d1, Flow: "two-leads", Stage: 0, Groups: []string{"sre-managers"}, Principals: []string{"acme/dana"}}
	case events.KindLocked:
		return &events.Locked{Prev: d1, By: bob, Target: events.LockTarget{Type: events.LockPrincipal, Name: "acme/carol"}, Reason: "laptop stolen"}
	case events.KindState:
		return &events.State{Prev: d1, Domain: "acme", By: bob, Identity: f.bob.JWT, Path: "prod/db", Op: events.StateSet,
			Attrs: map[string]string{"on_call": "alice"}, Merge: true, Reason: "rotation"}
	case events.KindCounted:
		return &events.Counted{Prev: d1, RefSeq: 4, Voter: bob}
	case events.KindStated:
		return &events.Stated{Prev: d1, By: bob, Path: "prod/db", Op: events.StateSet,
			Attrs: map[string]string{"on_call": "alice", "runbook": "https://wiki/db"}, Reason: "rotation"}
	}
	return nil
}

// signer returns the key entitled to emit kind k for acme in the fixture.
func (f *fixture) signer(k events.Kind) nkeys.KeyPair {
	switch {
	case k == events.KindRequested:
		return f.alice.Key
	case k.FromPrincipal():
		return f.bob.Key
	}
	switch events.RoleFor(k) {
	case "": // a refusal, which any component signs
		return f.approval
	case identity.RolePolicy:
		return f.policy
	case identity.RoleApproval:
		return f.approval
	case identity.RoleRedeemer:
		return f.redeemer
	case identity.RoleAuditor:
		return f.auditor
	}
	return f.issuer
}

// allKinds lists every kind that has a wire type.
var allKinds = events.Kinds()

// seal signs data as an acme event of kind k with kp and returns the stored message.
func seal(t testing.TB, k events.Kind, data any, kp nkeys.KeyPair) events.Message {
	t.Helper()
	out, err := events.Seal(events.Draft{
		Domain: "acme", RequestID: reqID, Kind: k, Source: "writ://acme/test", Time: t0, Data: data,
	}, kp)
	require.NoError(t, err)
	return events.Message{Subject: out.Subject, Seq: 1, Time: t0, Header: out.Header(), Body: out.Body}
}
