package consumers_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/internal/writtest"
)

// FuzzAttest sends arbitrary bytes, seeded with a genuine evidence bundle,
// to a running auditor's attestation subject, which anyone connected may
// reach. Every one is answered; an attestation comes only for a bundle
// holding exactly the request's stored messages up to the stream's own
// checkpoint, and it signs that bundle.
func FuzzAttest(f *testing.F) {
	e := writtest.Start(f, writtest.Options{})
	id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	e.Settle(id)
	m, err := e.NC.Request(audit.CheckpointSubject(e.Domain), nil, 10*time.Second)
	require.NoError(f, err)
	var made audit.Made
	require.NoError(f, json.Unmarshal(m.Data, &made), string(m.Data))
	genuine, err := audit.CollectEvidence(f.Context(), store.Reader{NC: e.NC, Stream: consumers.DefaultStream}, e.Runtime.Bundle, e.Domain, id)
	require.NoError(f, err)
	seed, err := json.Marshal(genuine)
	require.NoError(f, err)
	f.Add(seed)
	f.Add([]byte(`{"format": "writ-evidence/v1", "domain": "acme"}`))
	f.Add([]byte(`{"domain": "beta"}`))
	f.Add([]byte(`null`))
	auditor, err := e.Runtime.AuditorKey.PublicKey()
	require.NoError(f, err)

	f.Fuzz(func(t *testing.T, text []byte) {
		m, err := e.NC.Request(audit.AttestSubject(e.Domain), text, 10*time.Second)
		require.NoError(t, err, "the auditor answers")
		var answer struct {
			audit.Attestation
			Error string `json:"error"`
		}
		require.NoError(t, json.Unmarshal(m.Data, &answer), "answered %q", m.Data)
		if answer.Error != "" {
			return
		}
		var got audit.Evidence
		require.NoError(t, json.Unmarshal(text, &got))
		if got.Domain != genuine.Domain || got.RequestID != genuine.RequestID || got.Stream != genuine.Stream ||
			!sameStored(got.Checkpoint, genuine.Checkpoint) || !slices.EqualFunc(got.Messages, genuine.Messages, sameStored) {
			t.Fatalf("attested a bundle that is not the stream's: %s", text)
		}
		require.Equal(t, auditor, answer.Signer)
		require.NoError(t, events.VerifySignature(answer.Signer, answer.Signature, []byte("writ evidence\x00"+audit.Manifest(&got))),
			"the attestation signs the bundle sent")
	})
}

// sameStored compares what the stream stored, not the proof.
func sameStored(a, b audit.Entry) bool {
	return a.Seq == b.Seq && a.Stored.Equal(b.Stored) && a.Subject == b.Subject && a.Signer == b.Signer &&
		a.Signature == b.Signature && bytes.Equal(a.Body, b.Body)
}
