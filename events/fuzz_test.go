package events_test

import (
	"bytes"
	"encoding/base64"
	"slices"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/schemas"
)

// FuzzInspect feeds arbitrary messages to Inspect. It must never panic; a
// message whose headers the fuzzer wrote is trusted only if it is one of the
// validly signed seeds; and whatever Inspect trusts, it trusts consistently.
// The fuzzer may also have the body signed by a key of the fixture, to reach
// the checks after the signature.
func FuzzInspect(f *testing.F) {
	fx := newFixture(f)
	c := events.Checker{Bundle: fx.bundle}
	signers := []nkeys.KeyPair{nil, fx.alice.Key, fx.bob.Key, fx.policy, fx.approval, fx.issuer, fx.otherPolicy, fx.impostor.Key}

	var valid [][]byte
	for _, k := range allKinds {
		m := seal(f, k, fx.sample(k), fx.signer(k))
		valid = append(valid, m.Body)
		f.Add(m.Subject, m.Body, m.Header[events.HeaderSigner][0], m.Header[events.HeaderSignature][0], uint8(0))
		f.Add(m.Subject, m.Body, "", "", uint8(k))
	}
	f.Add("writ.acme."+reqID+".requested", []byte(`{}`), "", "", uint8(1))
	f.Add("writ.acme."+reqID+".requested", []byte(`not json`), "UABC", "AAAA", uint8(0))
	f.Add("writ..."+reqID, []byte(`null`), "", "", uint8(3))
	f.Add("", []byte(nil), "", "", uint8(0))

	f.Fuzz(func(t *testing.T, subject string, body []byte, signer, signature string, signWith uint8) {
		m := events.Message{Subject: subject, Seq: 1, Body: body, Header: map[string][]string{
			events.HeaderSigner: {signer}, events.HeaderSignature: {signature},
		}}
		if kp := signers[int(signWith)%len(signers)]; kp != nil {
			sig, err := kp.Sign(body)
			if err != nil {
				t.Fatal(err)
			}
			p, _ := kp.PublicKey()
			m.Header[events.HeaderSigner] = []string{p}
			m.Header[events.HeaderSignature] = []string{base64.RawURLEncoding.EncodeToString(sig)}
		}
		r := c.Inspect(m, t0)
		if r.Digest != events.Digest(body) {
			t.Fatalf("digest %s of another body", r.Digest)
		}
		if !r.Valid() {
			if events.Code(r.Err) == "invalid" {
				t.Fatalf("refusal without a code: %v", r.Err)
			}
			return
		}
		if signers[int(signWith)%len(signers)] == nil && !containsBody(valid, body) {
			t.Fatalf("trusted a message the fuzzer signed itself: %q", body)
		}
		// Whatever is trusted is consistent.
		if r.Kind.Type() != r.Envelope.Type || r.Envelope.Subject != r.RequestID {
			t.Fatalf("trusted %s with type %q and subject %q", r.Kind, r.Envelope.Type, r.Envelope.Subject)
		}
		if events.Subject(r.Domain, r.RequestID, r.Kind) != subject {
			t.Fatalf("trusted subject %q parsed as %s/%s/%s", subject, r.Domain, r.RequestID, r.Kind)
		}
		if err := schemas.Validate(r.Envelope.Type, body); err != nil {
			t.Fatalf("trusted a body its schema refuses: %v", err)
		}
		if err := events.VerifySignature(r.Signer, m.Header[events.HeaderSignature][0], body); err != nil {
			t.Fatalf("trusted a bad signature: %v", err)
		}
		if r.Data == nil {
			t.Fatal("trusted without data")
		}
		if r.Kind.FromPrincipal() {
			if r.Principal == nil || r.Principal.Key != r.Signer || r.Role != "" {
				t.Fatalf("principal event trusted with principal %+v, role %q", r.Principal, r.Role)
			}
		} else if r.Principal != nil || !fx.bundle.Entitled(r.Domain, r.Role, r.Signer) {
			t.Fatalf("component event trusted for role %q of %q", r.Role, r.Domain)
		}
	})
}

func containsBody(list [][]byte, b []byte) bool {
	for _, v := range list {
		if bytes.Equal(v, b) {
			return true
		}
	}
	return false
}

// FuzzParseSubject checks that a subject that parses is rebuilt exactly.
func FuzzParseSubject(f *testing.F) {
	f.Add("writ.acme." + reqID + ".requested")
	f.Add("writ.acme.42.voted")
	f.Add("writ...")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		d, id, k, err := events.ParseSubject(s)
		if err != nil {
			return
		}
		if k == events.KindNone || len(id) != 36 {
			t.Fatalf("parsed %q as kind %v, id %q", s, k, id)
		}
		if got := events.Subject(d, id, k); got != s {
			t.Fatalf("%q parsed and rebuilt as %q", s, got)
		}
	})
}

// FuzzInspectTampered starts from genuine sealed events of every kind and
// lets the fuzzer change the subject, the body, the signer and the
// signature, with no key to sign with: whatever Inspect trusts must be one
// of the genuine events exactly — its subject, body and signer, and a
// signature that decodes to its own (base64url may spell it differently).
func FuzzInspectTampered(f *testing.F) {
	fx := newFixture(f)
	c := events.Checker{Bundle: fx.bundle}
	type genuine struct {
		subject, signer string
		body, sig       []byte
	}
	var sealed []genuine
	for _, k := range allKinds {
		m := seal(f, k, fx.sample(k), fx.signer(k))
		signer, signature := m.Header[events.HeaderSigner][0], m.Header[events.HeaderSignature][0]
		sig, err := base64.RawURLEncoding.DecodeString(signature)
		if err != nil {
			f.Fatal(err)
		}
		if r := c.Inspect(m, t0); !r.Valid() {
			f.Fatalf("the genuine %s is not trusted: %v", k, r.Err)
		}
		sealed = append(sealed, genuine{m.Subject, signer, m.Body, sig})
		f.Add(m.Subject, m.Body, signer, signature)
	}
	f.Fuzz(func(t *testing.T, subject string, body []byte, signer, signature string) {
		m := events.Message{Subject: subject, Seq: 1, Body: body, Header: map[string][]string{
			events.HeaderSigner: {signer}, events.HeaderSignature: {signature},
		}}
		r := c.Inspect(m, t0)
		if !r.Valid() {
			return
		}
		sig, err := base64.RawURLEncoding.DecodeString(signature)
		if err != nil || !slices.ContainsFunc(sealed, func(g genuine) bool {
			return g.subject == subject && g.signer == signer && bytes.Equal(g.body, body) && bytes.Equal(g.sig, sig)
		}) {
			t.Fatalf("trusted a tampered %s event: signer %q, signature %q, body %q", r.Kind, signer, signature, body)
		}
	})
}
