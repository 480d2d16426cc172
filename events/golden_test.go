package events_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/schemas"
)

var update = flag.Bool("update", false, "rewrite the golden payloads in testdata/golden")

const goldenDir = "testdata/golden"

func goldenPath(eventType string) string { return filepath.Join(goldenDir, eventType+".json") }

// writeGolden rewrites the golden payloads from fully populated, really
// signed events. Run: go test ./events -run TestGolden -update
func writeGolden(t *testing.T) {
	t.Helper()
	f := newFixture(t)
	require.NoError(t, os.MkdirAll(goldenDir, 0o755))
	for _, k := range allKinds {
		m := seal(t, k, f.sample(k), f.signer(k))
		var out bytes.Buffer
		require.NoError(t, json.Indent(&out, m.Body, "", "  "))
		out.WriteByte('\n')
		require.NoError(t, os.WriteFile(goldenPath(k.Type()), out.Bytes(), 0o644))
	}
}

// TestGolden checks one committed example body per event type against its
// schema, and that the Go type of its data reads and writes it unchanged.
func TestGolden(t *testing.T) {
	if *update {
		writeGolden(t)
	}
	for _, k := range allKinds {
		t.Run(k.Type(), func(t *testing.T) {
			body, err := os.ReadFile(goldenPath(k.Type()))
			require.NoError(t, err, "every event type needs a golden payload; run with -update")
			require.NoError(t, schemas.Validate(k.Type(), body))

			var env events.Envelope
			require.NoError(t, json.Unmarshal(body, &env))
			assert.Equal(t, k.Type(), env.Type)
			assert.Equal(t, events.SpecVersion, env.SpecVersion)
			assert.True(t, strings.HasPrefix(env.ID, events.MsgID(reqID, k, "")+"."), "id %q: readable part, then the tag", env.ID)

			// The Go type knows every field the golden payload has...
			data := newData(k)
			dec := json.NewDecoder(bytes.NewReader(env.Data))
			dec.DisallowUnknownFields()
			require.NoError(t, dec.Decode(data), "the golden data has a field the Go type lacks")

			// ...and what the Go type writes back is the same data, and valid.
			again, err := json.Marshal(data)
			require.NoError(t, err)
			assert.JSONEq(t, string(env.Data), string(again))
			env.Data = again
			rebuilt, err := json.Marshal(env)
			require.NoError(t, err)
			assert.NoError(t, schemas.Validate(k.Type(), rebuilt))
		})
	}
}

// TestGoldenCoversEverySchema checks that the golden payloads, the event
// kinds and the schemas name the same types: no schema without an example,
// no stray example.
func TestGoldenCoversEverySchema(t *testing.T) {
	entries, err := os.ReadDir(goldenDir)
	require.NoError(t, err)
	var golden []string
	for _, e := range entries {
		golden = append(golden, strings.TrimSuffix(e.Name(), ".json"))
	}
	var kinds []string
	for _, k := range allKinds {
		kinds = append(kinds, k.Types()...) // earlier versions still read keep their schema and example
	}
	types := schemas.Types()
	slices.Sort(golden)
	slices.Sort(kinds)
	slices.Sort(types)
	assert.Equal(t, kinds, types, "one schema per event type")
	assert.Equal(t, kinds, golden, "one golden payload per event type")
}

// TestSealedEventsMatchSchema seals fully populated data of every kind, as
// the pipeline does, and checks the schema accepts it and Inspect trusts it.
func TestSealedEventsMatchSchema(t *testing.T) {
	f := newFixture(t)
	c := events.Checker{Bundle: f.bundle}
	for _, k := range allKinds {
		t.Run(k.String(), func(t *testing.T) {
			m := seal(t, k, f.sample(k), f.signer(k))
			require.NoError(t, schemas.Validate(k.Type(), m.Body))
			r := c.Inspect(m, t0)
			require.NoError(t, r.Err)
			assert.True(t, r.Valid())
			assert.Equal(t, f.sample(k), r.Data, "the data decodes to what was sealed")
		})
	}
}

// TestGoldenOlderTypes checks the committed examples of earlier versions
// still read: each is valid against its own schema, its kind accepts it,
// and the current Go type reads it without losing a field.
func TestGoldenOlderTypes(t *testing.T) {
	n := 0
	for _, k := range allKinds {
		for _, typ := range k.Types()[1:] {
			n++
			t.Run(typ, func(t *testing.T) {
				body, err := os.ReadFile(goldenPath(typ))
				require.NoError(t, err, "an earlier version still read keeps its golden payload")
				require.NoError(t, schemas.Validate(typ, body))
				var env events.Envelope
				require.NoError(t, json.Unmarshal(body, &env))
				assert.True(t, k.Accepts(env.Type))
				assert.False(t, events.KindRequested.Accepts(env.Type), "a version belongs to one kind")
				data := newData(k)
				dec := json.NewDecoder(bytes.NewReader(env.Data))
				dec.DisallowUnknownFields()
				require.NoError(t, dec.Decode(data))
			})
		}
	}
	assert.Equal(t, 2, n, "reviewed.v1 and alerted.v1")
}

// TestReviewedVersions: a reviewed.v1 (no outcome) reads as an approval,
// and a v2 review names either its approvers or its deniers, never both.
func TestReviewedVersions(t *testing.T) {
	body, err := os.ReadFile(goldenPath("writ.request.reviewed.v1"))
	require.NoError(t, err)
	var env events.Envelope
	require.NoError(t, json.Unmarshal(body, &env))
	var v1 events.Reviewed
	require.NoError(t, json.Unmarshal(env.Data, &v1))
	assert.False(t, v1.Denied(), "v1 has no denial")
	assert.NotEmpty(t, v1.Approvers)

	f := newFixture(t)
	c := events.Checker{Bundle: f.bundle}
	// A reviewed.v1 as an earlier Writ wrote it, signed by the approval
	// component: trusted, of kind reviewed, an approval.
	kp := f.signer(events.KindReviewed)
	sig, err := kp.Sign(body)
	require.NoError(t, err)
	signer, err := kp.PublicKey()
	require.NoError(t, err)
	old := c.Inspect(events.Message{Subject: events.Subject("acme", reqID, events.KindReviewed), Seq: 1, Time: t0, Body: body,
		Header: map[string][]string{events.HeaderSigner: {signer}, events.HeaderSignature: {base64.RawURLEncoding.EncodeToString(sig)}}}, t0)
	require.NoError(t, old.Err)
	assert.Equal(t, events.KindReviewed, old.Kind)
	assert.False(t, old.Data.(*events.Reviewed).Denied())
	// The same body on another kind's subject is not accepted.
	other := c.Inspect(events.Message{Subject: events.Subject("acme", reqID, events.KindApproved), Seq: 1, Time: t0, Body: body,
		Header: map[string][]string{events.HeaderSigner: {signer}, events.HeaderSignature: {base64.RawURLEncoding.EncodeToString(sig)}}}, t0)
	assert.ErrorIs(t, other.Err, events.ErrTypeMismatch)

	alice := events.PrincipalRef{Domain: "acme", Name: "alice"}
	const d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	for _, tc := range []struct {
		name string
		data *events.Reviewed
		ok   bool
	}{
		{"approved", &events.Reviewed{Prev: d1, Outcome: events.ReviewApproved, Approvers: []events.PrincipalRef{alice}}, true},
		{"denied", &events.Reviewed{Prev: d1, Outcome: events.ReviewDenied, By: []events.PrincipalRef{alice}}, true},
		{"approved naming deniers", &events.Reviewed{Prev: d1, Outcome: events.ReviewApproved, Approvers: []events.PrincipalRef{alice}, By: []events.PrincipalRef{alice}}, false},
		{"denied naming approvers", &events.Reviewed{Prev: d1, Outcome: events.ReviewDenied, By: []events.PrincipalRef{alice}, Approvers: []events.PrincipalRef{alice}}, false},
		{"denied by nobody", &events.Reviewed{Prev: d1, Outcome: events.ReviewDenied}, false},
		{"no outcome", &events.Reviewed{Prev: d1, Approvers: []events.PrincipalRef{alice}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.Inspect(seal(t, events.KindReviewed, tc.data, f.signer(events.KindReviewed)), t0)
			if tc.ok {
				assert.NoError(t, r.Err)
			} else {
				assert.ErrorIs(t, r.Err, events.ErrSchema)
			}
		})
	}
}

func newData(k events.Kind) any {
	if v := events.NewData(k); v != nil {
		return v
	}
	panic("no data type for " + k.String())
}
