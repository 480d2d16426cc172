package audit_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/store"
)

// fuzzTrail is a real run's whole trail, its trust bundle and an attested
// evidence bundle of its two-approver request, as plain data: the run's
// server is gone once the fuzz target that made it ends.
type fuzzTrail struct {
	msgs     []events.Message
	trust    *identity.Bundle
	evidence []byte
}

var (
	fuzzOnce sync.Once
	fuzzData *fuzzTrail
)

func trailForFuzzing(f *testing.F) *fuzzTrail {
	fuzzOnce.Do(func() {
		r := newRun(f)
		e := r.env
		ev, err := audit.CollectEvidence(f.Context(), store.Reader{NC: e.NC, Stream: "WRIT"}, e.Runtime.Bundle, e.Domain, r.ids["two"])
		require.NoError(f, err)
		ev.Result = audit.VerifyEvidenceContent(ev, e.Runtime.Bundle)
		b, err := json.Marshal(ev)
		require.NoError(f, err)
		m, err := e.NC.Request(audit.AttestSubject(e.Domain), b, 10*time.Second)
		require.NoError(f, err)
		var att audit.Attestation
		require.NoError(f, json.Unmarshal(m.Data, &att), string(m.Data))
		ev.Attestation = &att
		b, err = json.Marshal(ev)
		require.NoError(f, err)
		require.True(f, audit.VerifyEvidence(ev, e.Runtime.Bundle).OK(), "the genuine bundle verifies")
		fuzzData = &fuzzTrail{msgs: r.msgs, trust: e.Runtime.Bundle, evidence: b}
	})
	if fuzzData == nil {
		f.Fatal("no trail to fuzz")
	}
	return fuzzData
}

// FuzzVerifyEvidence feeds arbitrary evidence bundle files to
// VerifyEvidence (writ audit verify --evidence), seeded with a genuine,
// attested one. Nothing panics, with or without the checker's own keys,
// and a bundle verifies against those keys only if it says exactly what
// the genuine one says.
func FuzzVerifyEvidence(f *testing.F) {
	tr := trailForFuzzing(f)
	var genuine audit.Evidence
	require.NoError(f, json.Unmarshal(tr.evidence, &genuine))
	manifest := audit.Manifest(&genuine)
	sig, err := base64.RawURLEncoding.DecodeString(genuine.Attestation.Signature)
	require.NoError(f, err)
	f.Add(tr.evidence)
	unattested := genuine
	unattested.Attestation = nil
	b, err := json.Marshal(unattested)
	require.NoError(f, err)
	f.Add(b)
	f.Add([]byte(`{"format": "writ-evidence/v1", "trust": {"domains": {}}, "messages": [{"seq": 1}]}`))
	f.Fuzz(func(t *testing.T, text []byte) {
		var e audit.Evidence
		if json.Unmarshal(text, &e) != nil {
			return
		}
		_ = audit.VerifyEvidence(&e, nil)
		if !audit.VerifyEvidence(&e, tr.trust).OK() {
			return
		}
		a := e.Attestation
		if a == nil || audit.Manifest(&e) != manifest || a.Signer != genuine.Attestation.Signer {
			t.Fatalf("a changed bundle verifies: %s", text)
		}
		if got, err := base64.RawURLEncoding.DecodeString(a.Signature); err != nil || !bytes.Equal(got, sig) {
			t.Fatalf("verified with another attestation: %q", a.Signature)
		}
	})
}

// FuzzVerifyStream replaces one message of a real trail — any message,
// checkpoints included — with what the fuzzer makes of its subject, body,
// signer and signature, keeping its place and stored time, and verifies
// the trail as writ audit verify does. Nothing panics, and any change
// shows: every message is covered by the last checkpoint, or is that
// signed checkpoint.
func FuzzVerifyStream(f *testing.F) {
	tr := trailForFuzzing(f)
	first := func(m events.Message, k string) string {
		if v := m.Header[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	require.True(f, verify(tr.msgs, audit.Options{Bundle: tr.trust}).OK(), "the genuine trail verifies")
	last := len(tr.msgs) - 1
	require.True(f, isCheckpoint(tr.msgs[last]), "the trail ends with a checkpoint")
	for i, m := range tr.msgs {
		f.Add(uint16(i), m.Subject, m.Body, first(m, events.HeaderSigner), first(m, events.HeaderSignature))
	}
	f.Fuzz(func(t *testing.T, at uint16, subject string, body []byte, signer, signature string) {
		i := int(at) % len(tr.msgs)
		old := tr.msgs[i]
		msgs := cloneTrail(tr.msgs)
		msgs[i] = events.Message{Subject: subject, Seq: old.Seq, Time: old.Time, Body: body, Header: map[string][]string{
			events.HeaderSigner: {signer}, events.HeaderSignature: {signature},
		}}
		if !verify(msgs, audit.Options{Bundle: tr.trust}).OK() {
			return
		}
		same := subject == old.Subject && bytes.Equal(body, old.Body) && signer == first(old, events.HeaderSigner)
		if same && signature == first(old, events.HeaderSignature) {
			return
		}
		// The last checkpoint is in no tree: another spelling of its own
		// signature is still its signature.
		was, _ := base64.RawURLEncoding.DecodeString(first(old, events.HeaderSignature))
		is, err := base64.RawURLEncoding.DecodeString(signature)
		if same && i == last && err == nil && bytes.Equal(is, was) {
			return
		}
		t.Fatalf("message #%d changed unseen: subject %q, signer %q, signature %q, body %q", old.Seq, subject, signer, signature, body)
	})
}
