package events_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
)

// benchKinds are the events of the automated path the benchmarks seal
// and inspect: a principal's request, whose check verifies an identity
// JWT, and the policy component's answer, which needs none.
var benchKinds = []events.Kind{events.KindRequested, events.KindEvaluated}

// Seal with the fixture's real nkeys: a user key for the request, the
// policy component's server key for the evaluation.
func BenchmarkSeal(b *testing.B) {
	f := newFixture(b)
	for _, k := range benchKinds {
		d := events.Draft{Domain: "acme", RequestID: reqID, Kind: k, Source: "writ://acme/test", Time: t0, Data: f.sample(k)}
		kp := identity.Fast(f.signer(k)) // as keys loaded from files are
		b.Run(k.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := events.Seal(d, kp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Inspect of a stored message against the trust bundle: JSON, schema,
// data, signature, and the signer's entitlement or identity JWT.
func BenchmarkInspect(b *testing.B) {
	f := newFixture(b)
	c := events.Checker{Bundle: f.bundle}
	for _, k := range benchKinds {
		m := seal(b, k, f.sample(k), f.signer(k))
		require.NoError(b, c.Inspect(m, t0).Err)
		b.Run(k.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r := c.Inspect(m, t0); r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		})
	}
}

// The body's signature alone, the part of Inspect every event pays.
func BenchmarkVerifySignature(b *testing.B) {
	f := newFixture(b)
	m := seal(b, events.KindRequested, f.sample(events.KindRequested), f.alice.Key)
	signer, sig := m.Header[events.HeaderSigner][0], m.Header[events.HeaderSignature][0]
	b.ReportAllocs()
	for b.Loop() {
		if err := events.VerifySignature(signer, sig, m.Body); err != nil {
			b.Fatal(err)
		}
	}
}
