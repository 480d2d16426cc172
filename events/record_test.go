package events_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
)

// resign replaces the body of m and signs the new body with kp.
func resign(t testing.TB, m events.Message, body []byte, kp nkeys.KeyPair) events.Message {
	t.Helper()
	sig, err := kp.Sign(body)
	require.NoError(t, err)
	m.Body = body
	m.Header = map[string][]string{
		events.HeaderSigner:    {pub(t, kp)},
		events.HeaderSignature: {base64.RawURLEncoding.EncodeToString(sig)},
	}
	return m
}

// TestInspect walks every reason Inspect refuses a message, in the order it
// checks them, and the code each reason is recorded with.
func TestInspect(t *testing.T) {
	f := newFixture(t)
	req := func(id *identity.Identity, domain, name string) any { return f.requested(id, domain, name) }
	good := seal(t, events.KindRequested, req(f.alice, "acme", "alice"), f.alice.Key)

	tests := []struct {
		name    string
		msg     events.Message
		maxBody int
		want    error // nil: valid
		code    string
	}{
		{
			name: "valid request",
			msg:  good,
		},
		{
			name: "valid vote",
			msg:  seal(t, events.KindVoted, f.sample(events.KindVoted), f.bob.Key),
		},
		{
			name: "subject of another application",
			msg:  func() events.Message { m := good; m.Subject = "orders.acme." + reqID + ".requested"; return m }(),
			want: events.ErrSubject, code: "bad-subject",
		},
		{
			name: "subject whose request id is not a UUID",
			msg:  func() events.Message { m := good; m.Subject = "writ.acme.42.requested"; return m }(),
			want: events.ErrSubject, code: "bad-subject",
		},
		{
			name: "subject of an unknown kind",
			msg:  func() events.Message { m := good; m.Subject = "writ.acme." + reqID + ".cancelled"; return m }(),
			want: events.ErrSubject, code: "bad-subject",
		},
		{
			name:    "body above the checker's limit",
			msg:     good,
			maxBody: len(good.Body) - 1,
			want:    events.ErrOversized, code: "oversized",
		},
		{
			name: "body above the default limit",
			msg: func() events.Message {
				m := good
				m.Body = []byte(`{"pad":"` + strings.Repeat("x", events.DefaultMaxBody) + `"}`)
				return m
			}(),
			want: events.ErrOversized, code: "oversized",
		},
		{
			name: "body that is not JSON",
			msg:  func() events.Message { m := good; m.Body = []byte("restart prod/db please"); return m }(),
			want: events.ErrMalformed, code: "malformed",
		},
		{
			name: "JSON that is not an envelope",
			msg:  func() events.Message { m := good; m.Body = []byte(`["requested"]`); return m }(),
			want: events.ErrMalformed, code: "malformed",
		},
		{
			name: "envelope with a time that is not a time",
			msg:  func() events.Message { m := good; m.Body = []byte(`{"time":"noon"}`); return m }(),
			want: events.ErrMalformed, code: "malformed",
		},
		{
			name: "type of another kind than the subject's",
			msg:  func() events.Message { m := good; m.Subject = "writ.acme." + reqID + ".voted"; return m }(),
			want: events.ErrTypeMismatch, code: "type-mismatch",
		},
		{
			name: "data that breaks the schema, signed",
			msg: func() events.Message {
				d := f.requested(f.alice, "acme", "alice")
				d.Urgency = "yesterday"
				return seal(t, events.KindRequested, d, f.alice.Key)
			}(),
			want: events.ErrSchema, code: "schema",
		},
		{
			name: "envelope subject of another request than the message subject",
			msg: func() events.Message {
				m := good
				m.Subject = "writ.acme.11111111-2222-4333-8444-555555555555.requested"
				return m
			}(),
			want: events.ErrTypeMismatch, code: "type-mismatch",
		},
		{
			name: "no signature headers",
			msg:  func() events.Message { m := good; m.Header = nil; return m }(),
			want: events.ErrUnsigned, code: "unsigned",
		},
		{
			name: "signer without a signature",
			msg: func() events.Message {
				m := good
				m.Header = map[string][]string{events.HeaderSigner: good.Header[events.HeaderSigner]}
				return m
			}(),
			want: events.ErrUnsigned, code: "unsigned",
		},
		{
			name: "signature by another key than the named signer",
			msg: func() events.Message {
				m := resign(t, good, good.Body, f.bob.Key)
				m.Header[events.HeaderSigner] = []string{f.alice.Principal.Key}
				return m
			}(),
			want: events.ErrBadSignature, code: "bad-signature",
		},
		{
			name: "body changed after signing",
			msg: func() events.Message {
				m := good
				m.Body = []byte(strings.Replace(string(good.Body), `"high"`, `"critical"`, 1))
				require.NotEqual(t, good.Body, m.Body)
				return m
			}(),
			want: events.ErrBadSignature, code: "bad-signature",
		},
		{
			name: "signer that is not a public nkey",
			msg: func() events.Message {
				m := resign(t, good, good.Body, f.alice.Key)
				m.Header[events.HeaderSigner] = []string{"alice"}
				return m
			}(),
			want: events.ErrBadSignature, code: "bad-signature",
		},
		{
			name: "signature that is not base64url",
			msg: func() events.Message {
				m := resign(t, good, good.Body, f.alice.Key)
				m.Header[events.HeaderSignature] = []string{"not/base64+"}
				return m
			}(),
			want: events.ErrBadSignature, code: "bad-signature",
		},
		{
			name: "evaluation signed by another domain's policy key",
			msg:  seal(t, events.KindEvaluated, f.sample(events.KindEvaluated), f.otherPolicy),
			want: events.ErrNotEntitled, code: "signer-not-entitled",
		},
		{
			name: "evaluation signed by this domain's issuer key",
			msg:  seal(t, events.KindEvaluated, f.sample(events.KindEvaluated), f.issuer),
			want: events.ErrNotEntitled, code: "signer-not-entitled",
		},
		{
			name: "grant signed by another domain's issuer key",
			msg:  seal(t, events.KindGranted, f.sample(events.KindGranted), f.otherIssuer),
			want: events.ErrNotEntitled, code: "signer-not-entitled",
		},
		{
			name: "approval signed by a principal",
			msg:  seal(t, events.KindApproved, f.sample(events.KindApproved), f.alice.Key),
			want: events.ErrNotEntitled, code: "signer-not-entitled",
		},
		{
			name: "refusal signed by a key no domain trusts",
			msg:  seal(t, events.KindRefused, f.sample(events.KindRefused), f.stranger),
			want: events.ErrNotEntitled, code: "signer-not-entitled",
		},
		{
			name: "refusal signed by another domain's component",
			msg:  seal(t, events.KindRefused, f.sample(events.KindRefused), f.otherPolicy),
			want: events.ErrNotEntitled, code: "signer-not-entitled",
		},
		{
			name: "identity that is not a user JWT",
			msg: func() events.Message {
				d := f.requested(f.alice, "acme", "alice")
				d.Identity = "eyJhbGciOiJub25lIn0.e30.c2lnbmF0dXJl"
				return seal(t, events.KindRequested, d, f.alice.Key)
			}(),
			want: identity.ErrIdentityMalformed, code: "identity-malformed",
		},
		{
			name: "identity that names no domain",
			msg:  seal(t, events.KindRequested, req(f.noDomain, "acme", "nowhere"), f.noDomain.Key),
			want: identity.ErrNoDomain, code: "identity-no-domain",
		},
		{
			name: "identity of a domain the bundle does not know",
			msg:  seal(t, events.KindRequested, req(f.ghost, "ghost", "casper"), f.ghost.Key),
			want: identity.ErrUnknownDomain, code: "unknown-domain",
		},
		{
			name: "identity claiming acme signed by other's account key",
			msg:  seal(t, events.KindRequested, req(f.impostor, "acme", "alice"), f.impostor.Key),
			want: identity.ErrUntrustedKey, code: "untrusted-key",
		},
		{
			name: "identity signed by a signing key of acme's account",
			msg:  seal(t, events.KindRequested, req(f.fwd, "acme", "delegated"), f.fwd.Key),
			want: identity.ErrUntrustedKey, code: "untrusted-key",
		},
		{
			name: "expired identity",
			msg:  seal(t, events.KindRequested, req(f.expired, "acme", "old"), f.expired.Key),
			want: identity.ErrIdentityExpired, code: "identity-expired",
		},
		{
			name: "identity not valid yet",
			msg:  seal(t, events.KindRequested, req(f.notYet, "acme", "early"), f.notYet.Key),
			want: identity.ErrNotYetValid, code: "identity-not-yet-valid",
		},
		{
			name: "request with alice's identity signed by bob",
			msg:  seal(t, events.KindRequested, req(f.alice, "acme", "alice"), f.bob.Key),
			want: events.ErrSignerMismatch, code: "signer-mismatch",
		},
		{
			name: "vote with bob's identity signed by alice",
			msg:  seal(t, events.KindVoted, f.sample(events.KindVoted), f.alice.Key),
			want: events.ErrSignerMismatch, code: "signer-mismatch",
		},
		{
			name: "request claiming another name than its identity",
			msg:  seal(t, events.KindRequested, req(f.alice, "acme", "bob"), f.alice.Key),
			want: events.ErrClaimedIdentity, code: "identity-mismatch",
		},
		{
			name: "request claiming another domain than its identity",
			msg:  seal(t, events.KindRequested, req(f.alice, "other", "alice"), f.alice.Key),
			want: events.ErrClaimedIdentity, code: "identity-mismatch",
		},
		{
			name: "vote claiming another voter than its identity",
			msg: func() events.Message {
				v := f.sample(events.KindVoted).(*events.Voted)
				v.Voter.Name = "alice"
				return seal(t, events.KindVoted, v, f.bob.Key)
			}(),
			want: events.ErrClaimedIdentity, code: "identity-mismatch",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := events.Checker{Bundle: f.bundle, MaxBody: tt.maxBody}
			r := c.Inspect(tt.msg, t0)
			assert.Equal(t, events.Digest(tt.msg.Body), r.Digest, "the digest is set whatever the outcome")
			if tt.want == nil {
				require.NoError(t, r.Err)
				assert.True(t, r.Valid())
				require.NotNil(t, r.Principal)
				assert.Equal(t, r.Signer, r.Principal.Key)
				return
			}
			require.Error(t, r.Err)
			assert.False(t, r.Valid())
			assert.ErrorIs(t, r.Err, tt.want)
			assert.Equal(t, tt.code, events.Code(r.Err))
			assert.Nil(t, r.Principal, "a refused message names no verified principal")
			assert.Empty(t, r.Role, "a refused message plays no role")
		})
	}
}

// TestInspectComponentRoles checks the role Inspect records for each
// component kind, and that any component of the domain may refuse.
func TestInspectComponentRoles(t *testing.T) {
	f := newFixture(t)
	c := events.Checker{Bundle: f.bundle}
	tests := []struct {
		kind events.Kind
		key  nkeys.KeyPair
		role identity.Role
	}{
		{events.KindRejected, f.policy, identity.RolePolicy},
		{events.KindEvaluated, f.policy, identity.RolePolicy},
		{events.KindApproved, f.approval, identity.RoleApproval},
		{events.KindDenied, f.approval, identity.RoleApproval},
		{events.KindExpired, f.approval, identity.RoleApproval},
		{events.KindGranted, f.issuer, identity.RoleIssuer},
		{events.KindRefused, f.policy, identity.RolePolicy},
		{events.KindRefused, f.approval, identity.RoleApproval},
		{events.KindRefused, f.issuer, identity.RoleIssuer},
	}
	for _, tt := range tests {
		t.Run(tt.kind.String()+"/"+string(tt.role), func(t *testing.T) {
			r := c.Inspect(seal(t, tt.kind, f.sample(tt.kind), tt.key), t0)
			require.NoError(t, r.Err)
			assert.Equal(t, tt.role, r.Role)
			assert.Equal(t, pub(t, tt.key), r.Signer)
			assert.Nil(t, r.Principal)
		})
	}
	// A component key signs only its own role's kinds.
	for _, k := range []events.Kind{events.KindRejected, events.KindEvaluated, events.KindApproved, events.KindDenied, events.KindExpired, events.KindGranted} {
		for _, key := range []nkeys.KeyPair{f.policy, f.approval, f.issuer} {
			if role, _ := f.bundle.RoleOf("acme", pub(t, key)); role == events.RoleFor(k) {
				continue
			}
			r := c.Inspect(seal(t, k, f.sample(k), key), t0)
			assert.ErrorIs(t, r.Err, events.ErrNotEntitled, "%s signed by a %v key", k, key)
		}
	}
}

// TestInspectKeepsWhatItLearnt checks that the fields learnt before a failure
// stay set, so a refusal can name what it refuses.
func TestInspectKeepsWhatItLearnt(t *testing.T) {
	f := newFixture(t)
	c := events.Checker{Bundle: f.bundle}

	m := seal(t, events.KindRequested, f.requested(f.alice, "acme", "alice"), f.alice.Key)
	m.Seq = 7
	m.Header[events.HeaderSignature] = []string{base64.RawURLEncoding.EncodeToString(make([]byte, 64))}
	r := c.Inspect(m, t0)
	require.ErrorIs(t, r.Err, events.ErrBadSignature)
	assert.Equal(t, "acme", r.Domain)
	assert.Equal(t, reqID, r.RequestID)
	assert.Equal(t, events.KindRequested, r.Kind)
	assert.Equal(t, uint64(7), r.Seq)
	assert.Equal(t, events.TypeRequested, r.Envelope.Type)
	assert.Equal(t, f.alice.Principal.Key, r.Signer)
	require.IsType(t, &events.Requested{}, r.Data)
	assert.Equal(t, "prod/db", r.Data.(*events.Requested).Resource)

	r = c.Inspect(seal(t, events.KindRequested, f.requested(f.expired, "acme", "old"), f.expired.Key), t0)
	require.ErrorIs(t, r.Err, identity.ErrIdentityExpired)
	assert.NotNil(t, r.Data)
	assert.Nil(t, r.Principal)
}

// TestInspectPrecedence checks that a message with several faults is
// refused for the first one Inspect checks.
func TestInspectPrecedence(t *testing.T) {
	f := newFixture(t)
	good := seal(t, events.KindRequested, f.requested(f.alice, "acme", "alice"), f.alice.Key)
	tests := []struct {
		name    string
		edit    func(m *events.Message)
		maxBody int
		want    error
	}{
		{"bad subject before size", func(m *events.Message) { m.Subject = "writ.acme" }, 10, events.ErrSubject},
		{"size before JSON", func(m *events.Message) { m.Body = []byte(strings.Repeat("?", 2048)) }, 1024, events.ErrOversized},
		{"JSON before signature", func(m *events.Message) { m.Body = []byte("{"); m.Header = nil }, 0, events.ErrMalformed},
		{"schema before signature", func(m *events.Message) {
			m.Body = []byte(strings.Replace(string(m.Body), `"high"`, `"urgent"`, 1))
			m.Header = nil
		}, 0, events.ErrSchema},
		{"signature before entitlement", func(m *events.Message) { m.Header[events.HeaderSignature] = []string{"AAAA"} }, 0, events.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := good
			m.Header = map[string][]string{}
			for k, v := range good.Header {
				m.Header[k] = v
			}
			tt.edit(&m)
			r := events.Checker{Bundle: f.bundle, MaxBody: tt.maxBody}.Inspect(m, t0)
			assert.ErrorIs(t, r.Err, tt.want)
		})
	}
}

// TestInspectIdentityExpiryAtStoreTime shows that a history replayed after
// a requester's identity expires loses its request, although the request
// was valid when the stream stored it.
func TestInspectIdentityExpiryAtStoreTime(t *testing.T) {
	f := newFixture(t)
	c := events.Checker{Bundle: f.bundle}
	m := seal(t, events.KindRequested, f.requested(f.alice, "acme", "alice"), f.alice.Key)
	require.NoError(t, c.Inspect(m, t0).Err)
	later := f.alice.Principal.Expires.Add(time.Hour) // replayed a day later
	assert.NoError(t, c.Inspect(m, later).Err, "stored at %s while the identity was valid", m.Time)
}

func TestCode(t *testing.T) {
	tests := []struct {
		err  error
		code string
	}{
		{events.ErrSubject, "bad-subject"},
		{events.ErrOversized, "oversized"},
		{events.ErrMalformed, "malformed"},
		{events.ErrSchema, "schema"},
		{events.ErrTypeMismatch, "type-mismatch"},
		{events.ErrUnsigned, "unsigned"},
		{events.ErrBadSignature, "bad-signature"},
		{events.ErrNotEntitled, "signer-not-entitled"},
		{events.ErrSignerMismatch, "signer-mismatch"},
		{events.ErrClaimedIdentity, "identity-mismatch"},
		{identity.ErrIdentityMalformed, "identity-malformed"},
		{identity.ErrNoDomain, "identity-no-domain"},
		{identity.ErrUnknownDomain, "unknown-domain"},
		{identity.ErrUntrustedKey, "untrusted-key"},
		{identity.ErrKeyRevoked, "key-revoked"},
		{identity.ErrIdentityExpired, "identity-expired"},
		{identity.ErrNotYetValid, "identity-not-yet-valid"},
		{errors.New("something else"), "invalid"},
		{nil, "invalid"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		name := "nil"
		if tt.err != nil {
			name = tt.err.Error()
		}
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tt.code, events.Code(tt.err))
			if tt.err != nil {
				wrapped := errors.Join(errors.New("context"), tt.err)
				assert.Equal(t, tt.code, events.Code(wrapped), "the code survives wrapping")
			}
		})
		if tt.code != "invalid" {
			assert.False(t, seen[tt.code], "code %q used twice", tt.code)
			seen[tt.code] = true
		}
	}
}

func TestRoleFor(t *testing.T) {
	tests := map[events.Kind]identity.Role{
		events.KindNone:      "",
		events.KindRequested: "",
		events.KindVoted:     "",
		events.KindRefused:   "",
		events.KindRejected:  identity.RolePolicy,
		events.KindEvaluated: identity.RolePolicy,
		events.KindApproved:  identity.RoleApproval,
		events.KindDenied:    identity.RoleApproval,
		events.KindExpired:   identity.RoleApproval,
		events.KindGranted:   identity.RoleIssuer,
	}
	for k, want := range tests {
		t.Run(k.String(), func(t *testing.T) {
			assert.Equal(t, want, events.RoleFor(k))
		})
	}
}

func TestInspectIdentityExpiresAtExp(t *testing.T) {
	f := newFixture(t)
	c := events.Checker{Bundle: f.bundle}
	m := seal(t, events.KindRequested, f.requested(f.alice, "acme", "alice"), f.alice.Key)
	m.Time = time.Time{} // not read from a stream: judged at now
	r := c.Inspect(m, f.alice.Principal.Expires)
	assert.ErrorIs(t, r.Err, identity.ErrIdentityExpired, "an identity is expired at its exp")
	r = c.Inspect(m, f.alice.Principal.Expires.Add(-time.Second))
	assert.NoError(t, r.Err, "and valid a second before")
	m.Time = f.alice.Principal.Expires // stored at exp: expired whatever now is
	r = c.Inspect(m, f.alice.Principal.Expires.Add(-time.Hour))
	assert.ErrorIs(t, r.Err, identity.ErrIdentityExpired, "judged when the stream stored it")
}

// A signed request or vote names its domain in the body, so it cannot be
// replayed into another domain's subjects.
func TestInspectRefusesADomainOtherThanTheSubjects(t *testing.T) {
	f := newFixture(t)
	c := events.Checker{Bundle: f.bundle}
	req := f.requested(f.alice, "acme", "alice")
	req.Domain = "other"
	r := c.Inspect(seal(t, events.KindRequested, req, f.alice.Key), t0)
	assert.ErrorIs(t, r.Err, events.ErrWrongDomain)
	assert.Equal(t, "wrong-domain", events.Code(r.Err))

	vote := f.sample(events.KindVoted).(*events.Voted)
	vote.Domain = "other"
	r = c.Inspect(seal(t, events.KindVoted, vote, f.bob.Key), t0)
	assert.ErrorIs(t, r.Err, events.ErrWrongDomain)
}

// The holder key must be a real curve key (checksum included), or the
// grant could never be sealed and the request would hang after approval.
func TestInspectRefusesABadHolderKey(t *testing.T) {
	f := newFixture(t)
	c := events.Checker{Bundle: f.bundle}
	req := f.requested(f.alice, "acme", "alice")
	req.HolderXKey = "X" + strings.Repeat("A", 55) // the schema's shape, a bad checksum
	r := c.Inspect(seal(t, events.KindRequested, req, f.alice.Key), t0)
	assert.ErrorIs(t, r.Err, events.ErrBadHolderKey)
	assert.Equal(t, "bad-holder-key", events.Code(r.Err))
}

func TestValidResource(t *testing.T) {
	for _, ok := range []string{"prod/db", "a", "dev/x.y/z", "svc:web/@v2", "a_b/~c"} {
		assert.True(t, events.ValidResource(ok), ok)
	}
	for _, bad := range []string{"", "/prod", "prod/", "prod//db", "dev/../prod/db", "./prod", "prod/.", ".hidden", "a b", strings.Repeat("a", 513)} {
		assert.False(t, events.ValidResource(bad), bad)
	}
}
