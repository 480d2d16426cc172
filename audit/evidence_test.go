package audit_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/internal/store"
)

// An evidence bundle, made from a live stream and attested by the
// auditor, verifies offline from its file alone; any change to it, in any
// part, makes it fail.
func TestEvidenceBundle(t *testing.T) {
	r := newRun(t)
	e := r.env
	reader := store.Reader{NC: e.NC, Stream: "WRIT"}
	ev, err := audit.CollectEvidence(t.Context(), reader, e.Runtime.Bundle, e.Domain, r.ids["two"])
	require.NoError(t, err)
	require.NotNil(t, ev.Policy)
	require.Equal(t, 1, audit.VerifyEvidence(ev, e.Runtime.Bundle).Errors, "no attestation yet")
	ev.Result = audit.VerifyEvidenceContent(ev, e.Runtime.Bundle)
	require.True(t, ev.Result.OK(), "%v", ev.Result.Findings)

	b, err := json.Marshal(ev)
	require.NoError(t, err)
	m, err := e.NC.Request(audit.AttestSubject(e.Domain), b, 10*time.Second)
	require.NoError(t, err)
	var att audit.Attestation
	require.NoError(t, json.Unmarshal(m.Data, &att), string(m.Data))
	require.NotEmpty(t, att.Signature, string(m.Data))
	ev.Attestation = &att

	// Offline: from the file alone.
	path := filepath.Join(t.TempDir(), "evidence.json")
	b, err = json.MarshalIndent(ev, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o600))
	load := func() *audit.Evidence {
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		var got audit.Evidence
		require.NoError(t, json.Unmarshal(raw, &got))
		return &got
	}
	rep := audit.VerifyEvidence(load(), e.Runtime.Bundle)
	require.True(t, rep.OK(), "%v", rep.Findings)
	assert.EqualValues(t, len(ev.Messages)+1, rep.Messages, "the request's messages and the policy version")
	assert.EqualValues(t, 1, rep.Requests)
	rep = audit.VerifyEvidence(load(), nil)
	require.True(t, rep.OK(), "with the keys it carries: %v", rep.Findings)
	assert.Equal(t, 1, rep.Warnings, "says the keys came from the bundle")

	// The auditor refuses to attest a bundle that is not the stream's.
	forged := load()
	forged.Messages = forged.Messages[:len(forged.Messages)-1]
	forged.Attestation = nil
	b, _ = json.Marshal(forged)
	m, err = e.NC.Request(audit.AttestSubject(e.Domain), b, 10*time.Second)
	require.NoError(t, err)
	assert.Contains(t, string(m.Data), "exactly the request's stored messages")

	changes := map[string]func(x *audit.Evidence){
		"drop the last message":  func(x *audit.Evidence) { x.Messages = x.Messages[:len(x.Messages)-1] },
		"drop the first message": func(x *audit.Evidence) { x.Messages = x.Messages[1:] },
		"swap two messages":      func(x *audit.Evidence) { x.Messages[1], x.Messages[2] = x.Messages[2], x.Messages[1] },
		"drop the policy":        func(x *audit.Evidence) { x.Policy = nil },
		"drop the attestation":   func(x *audit.Evidence) { x.Attestation = nil },
		"another request id":     func(x *audit.Evidence) { x.RequestID = r.ids["denied"] },
		"edit the result":        func(x *audit.Evidence) { x.Result.Warnings++ },
		"re-date the bundle":     func(x *audit.Evidence) { x.Created = x.Created.Add(time.Hour) },
		"a stored time":          func(x *audit.Evidence) { x.Messages[2].Stored = x.Messages[2].Stored.Add(-time.Second) },
		"a signature":            func(x *audit.Evidence) { x.Messages[0].Signature = x.Messages[1].Signature },
		"a leaf index":           func(x *audit.Evidence) { x.Messages[1].Leaf++ },
		"the checkpoint body":    func(x *audit.Evidence) { x.Checkpoint.Body[len(x.Checkpoint.Body)-3] ^= 1 },
		"a trusted key": func(x *audit.Evidence) {
			for _, d := range x.Trust.Domains {
				k := d.Accounts[0]
				last := "A"
				if k[len(k)-1] == 'A' {
					last = "B"
				}
				d.Accounts = []string{k[:len(k)-1] + last}
			}
		},
	}
	for i := range ev.Messages {
		changes["flip a bit in message "+itoa(i)] = func(x *audit.Evidence) { x.Messages[i].Body[len(x.Messages[i].Body)/2] ^= 0x04 }
		changes["a proof hash of message "+itoa(i)] = func(x *audit.Evidence) {
			if len(x.Messages[i].Proof) > 0 {
				x.Messages[i].Proof[0] = x.Messages[i].Proof[len(x.Messages[i].Proof)-1][:len(x.Messages[i].Proof[0])-1] + "0"
			} else {
				x.Messages[i].Proof = []string{x.Checkpoint.Signature}
			}
		}
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			x := load()
			change(x)
			for _, trust := range []any{e.Runtime.Bundle, nil} {
				var rep *audit.Report
				if trust == nil {
					rep = audit.VerifyEvidence(x, nil)
				} else {
					rep = audit.VerifyEvidence(x, e.Runtime.Bundle)
				}
				assert.False(t, rep.OK(), "trust %v: the change went unseen", trust != nil)
			}
		})
	}
}

func itoa(i int) string { return string(rune('0' + i)) }
