package series_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
)

const seriesID = "6f0c1b9e-2d3a-4b5c-8d7e-9f0a1b2c3d4e"

var t0 = time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)

// history builds a series' records as Inspect would produce them: each
// event chained to the last message, whatever that was.
type history struct {
	t       testing.TB
	id      string
	records []events.Record
}

func newHistory(t testing.TB) *history { return &history{t: t, id: seriesID} }

// event is one record to add.
type event struct {
	kind events.Kind
	data any
	err  error   // Inspect's verdict: not trustworthy
	prev *string // overrides the chain
}

var (
	alice    = identity.Principal{Domain: "acme", Name: "alice", Key: "UALICE"}
	aliceRef = events.PrincipalRef{Domain: "acme", Name: "alice"}
	carol    = events.LockTarget{Type: events.LockPrincipal, Name: "acme/carol"}
)

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
	if e.data != nil {
		require.True(h.t, events.SetPrev(e.data, prev), "%T is linked", e.data)
	}
	at := t0.Add(time.Duration(seq) * time.Second)
	r := events.Record{
		Message:   events.Message{Subject: events.Subject("acme", h.id, e.kind), Seq: seq, Time: at},
		Domain:    "acme",
		RequestID: h.id,
		Kind:      e.kind,
		Digest:    fmt.Sprintf("sha256:%064x", seq),
		Envelope:  events.Envelope{Type: e.kind.Type(), Subject: h.id, Time: at},
		Data:      e.data,
		Err:       e.err,
	}
	if e.kind.FromPrincipal() {
		r.Principal = &alice
	} else {
		r.Role = events.RoleFor(e.kind)
	}
	h.records = append(h.records, r)
	return r
}

// junk is a message on the series' subjects that is not trustworthy:
// unsigned, or signed by a key not entitled to it.
func junk(kind events.Kind, data any) event {
	return event{kind: kind, data: data, err: events.ErrNotEntitled}
}

func refusedEv(ref uint64, code string) event {
	return event{kind: events.KindRefused, data: &events.Refused{RefSeq: ref, Code: code, Reason: "no"}}
}

func lockAsk(unlock bool) event {
	return event{kind: events.KindLock, data: &events.Lock{Domain: "acme", By: aliceRef, Target: carol, Unlock: unlock, Reason: "stolen laptop"}}
}

func locked(target events.LockTarget, unlock bool) event {
	return event{kind: events.KindLocked, data: &events.Locked{By: aliceRef, Target: target, Unlock: unlock, Reason: "stolen laptop"}}
}

func stateAsk(op string, attrs map[string]string, merge bool) event {
	return event{kind: events.KindState, data: &events.State{Domain: "acme", By: aliceRef, Path: "prod/db", Op: op, Attrs: attrs, Merge: merge}}
}

func stated(op string, attrs map[string]string) event {
	return event{kind: events.KindStated, data: &events.Stated{By: aliceRef, Path: "prod/db", Op: op, Attrs: attrs}}
}

func policyEv(p string) event {
	return event{kind: events.KindPolicy, data: &events.Policy{PolicyDigest: "sha256:" + p, PolicySource: "permit(principal, action, resource);", FlowsDigest: "sha256:f", FlowsSource: "{}"}}
}

func checkpoint(stream string, size, last uint64) event {
	return event{kind: events.KindCheckpoint, data: &events.Checkpoint{Stream: stream, TreeSize: size, FirstSeq: 1, LastSeq: last, LastTime: t0, Root: "sha256:r"}}
}

func witnessed(domain string, seq uint64) event {
	return event{kind: events.KindWitnessed, data: &events.Witnessed{Domain: domain, Seq: seq, Subject: "writ.globex.x.checkpoint", Signer: "A", Signature: "s", Checkpoint: "{}"}}
}

func guardAlert(alert string) event {
	return event{kind: events.KindAlerted, data: &events.Alerted{Alert: alert, Reason: "stream WRIT: max age is 2s"}}
}

func requestedEv() event {
	return event{kind: events.KindRequested, data: &events.Requested{Domain: "acme", Requester: aliceRef, Action: "restart", Resource: "prod/db", Urgency: "normal"}}
}
