package events_test

import (
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
)

func TestSeal(t *testing.T) {
	f := newFixture(t)
	local := t0.In(time.FixedZone("CET", 3600))
	out, err := events.Seal(events.Draft{
		Domain: "acme", RequestID: reqID, Kind: events.KindVoted, Ordinal: "3",
		Source: "writ://acme/cli", Time: local, Data: f.sample(events.KindVoted),
	}, f.bob.Key)
	require.NoError(t, err)

	assert.Equal(t, "writ.acme."+reqID+".voted", out.Subject)
	assert.Regexp(t, `^`+reqID+`\.voted\.3\.[a-z2-7]{16}$`, out.MsgID, "readable part, then the producer's tag")
	assert.Equal(t, f.bob.Principal.Key, out.Signer)
	assert.Equal(t, map[string][]string{
		events.HeaderMsgID:     {out.MsgID},
		events.HeaderSigner:    {out.Signer},
		events.HeaderSignature: {out.Signature},
	}, out.Header())
	require.NoError(t, events.VerifySignature(out.Signer, out.Signature, out.Body))

	var env events.Envelope
	require.NoError(t, json.Unmarshal(out.Body, &env))
	assert.Equal(t, events.SpecVersion, env.SpecVersion)
	assert.Equal(t, out.MsgID, env.ID)
	assert.Equal(t, "writ://acme/cli", env.Source)
	assert.Equal(t, events.TypeVoted, env.Type)
	assert.Equal(t, reqID, env.Subject)
	assert.Equal(t, events.ContentType, env.DataContentType)
	assert.Equal(t, time.UTC, env.Time.Location(), "the envelope time is UTC")
	assert.True(t, env.Time.Equal(t0))
	assert.Contains(t, string(out.Body), `"time":"2025-03-14T09:26:53Z"`)
}

// The message id is the same when the same producer seals the same data
// (retries dedupe), and another key cannot make it (no squatting).
func TestSealMsgIDIsDeterministicAndKeyed(t *testing.T) {
	f := newFixture(t)
	draft := events.Draft{Domain: "acme", RequestID: reqID, Kind: events.KindVoted, Ordinal: "3",
		Source: "writ://acme/cli", Time: t0, Data: f.sample(events.KindVoted)}
	a, err := events.Seal(draft, f.bob.Key)
	require.NoError(t, err)
	draft.Time = t0.Add(time.Minute) // a retry a minute later
	b, err := events.Seal(draft, f.bob.Key)
	require.NoError(t, err)
	assert.Equal(t, a.MsgID, b.MsgID, "a retry of the same data by the same key")
	c, err := events.Seal(draft, f.alice.Key)
	require.NoError(t, err)
	assert.NotEqual(t, a.MsgID, c.MsgID, "another key cannot take the id")
	fast, err := events.Seal(draft, identity.Fast(f.bob.Key))
	require.NoError(t, err)
	assert.Equal(t, a.MsgID, fast.MsgID, "a key loaded once makes the same ids")
	draft.Data = f.sample(events.KindApproved)
	draft.Kind = events.KindApproved
	d, err := events.Seal(draft, f.bob.Key)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(d.MsgID, reqID+".approved.3."))
}

func TestSealRefuses(t *testing.T) {
	kp := mustKey(t, nkeys.CreateServer)
	tests := []struct {
		name string
		d    events.Draft
	}{
		{"no kind", events.Draft{Domain: "acme", RequestID: reqID, Data: struct{}{}}},
		{"unknown kind", events.Draft{Domain: "acme", RequestID: reqID, Kind: events.Kind(200), Data: struct{}{}}},
		{"data JSON cannot encode", events.Draft{Domain: "acme", RequestID: reqID, Kind: events.KindApproved, Data: make(chan int)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := events.Seal(tt.d, kp)
			assert.Error(t, err)
		})
	}
}

func TestVerifySignature(t *testing.T) {
	kp := mustKey(t, nkeys.CreateServer)
	other := mustKey(t, nkeys.CreateServer)
	body := []byte(`{"hello":"world"}`)
	sig, err := kp.Sign(body)
	require.NoError(t, err)
	good := base64.RawURLEncoding.EncodeToString(sig)
	tests := []struct {
		name      string
		signer    string
		signature string
		body      []byte
		want      error
	}{
		{"valid", pub(t, kp), good, body, nil},
		{"no signer", "", good, body, events.ErrUnsigned},
		{"no signature", pub(t, kp), "", body, events.ErrUnsigned},
		{"other signer", pub(t, other), good, body, events.ErrBadSignature},
		{"other body", pub(t, kp), good, []byte(`{"hello":"World"}`), events.ErrBadSignature},
		{"padded base64", pub(t, kp), base64.URLEncoding.EncodeToString(sig), body, events.ErrBadSignature},
		{"standard base64 alphabet", pub(t, kp), "+/" + good[2:], body, events.ErrBadSignature},
		{"signer is a seed", string(mustSeed(t, kp)), good, body, events.ErrBadSignature},
		{"truncated signature", pub(t, kp), good[:20], body, events.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := events.VerifySignature(tt.signer, tt.signature, tt.body)
			if tt.want == nil {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, tt.want)
		})
	}
}

func mustSeed(t testing.TB, kp nkeys.KeyPair) []byte {
	t.Helper()
	s, err := kp.Seed()
	require.NoError(t, err)
	return s
}

func TestDigest(t *testing.T) {
	d := events.Digest([]byte("abc"))
	assert.Equal(t, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", d)
	assert.Regexp(t, regexp.MustCompile(`^sha256:[0-9a-f]{64}$`), events.Digest(nil))
	assert.NotEqual(t, events.Digest([]byte("abc ")), d)
}
