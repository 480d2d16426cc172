package schemas_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/schemas"
)

const (
	uuid   = "0b7e6f1a-3c2d-4e5f-8a9b-0c1d2e3f4a5b"
	digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	jwt    = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJuYW1lIjoiYWxpY2UifQ.c2lnbmF0dXJlc2lnbmF0dXJl"
	xkey   = "XAL54S5FE6SRPONXRNVWUHXMHA2DOFHU6BHAXOKWHDAXIGR3GS45SCFQ"
	ukey   = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"
)

// doc is a JSON document under test, edited by path ("data.requester.name").
type doc map[string]any

func envelope(eventType string, data map[string]any) doc {
	return doc{
		"specversion":     "1.0",
		"id":              uuid + ".requested",
		"source":          "writ://acme/cli",
		"type":            eventType,
		"subject":         uuid,
		"time":            "2025-03-14T09:26:53Z",
		"datacontenttype": "application/json",
		"data":            data,
	}
}

func requested() doc {
	return envelope("writ.request.requested.v1", map[string]any{
		"prev":        "",
		"domain":      "acme",
		"requester":   map[string]any{"domain": "acme", "name": "alice"},
		"identity":    jwt,
		"action":      "restart",
		"resource":    "prod/db",
		"params":      map[string]any{"replica": "2"},
		"urgency":     "high",
		"reason":      "stuck replication",
		"ticket":      "OPS-1234",
		"ttl_seconds": 600,
		"holder_xkey": xkey,
	})
}

func voted() doc {
	return envelope("writ.request.voted.v1", map[string]any{
		"prev": digest, "domain": "acme", "voter": map[string]any{"domain": "acme", "name": "bob"},
		"identity": jwt, "decision": "approve", "request_digest": digest,
	})
}

func granted() doc {
	return envelope("writ.request.granted.v1", map[string]any{
		"prev": digest, "token_hash": digest, "sealed": "c2VhbGVk", "sealed_by": xkey, "holder": ukey,
		"not_before": "2025-03-14T09:27:00Z", "expires_at": "2025-03-14T09:37:00Z", "evidence": digest,
	})
}

func evaluated() doc {
	return envelope("writ.request.evaluated.v1", map[string]any{
		"prev": digest, "outcome": "review", "reasons": []any{"developers-restart-prod"},
		"policy_digest": digest, "flows_digest": digest,
		"principal": map[string]any{"domain": "acme", "name": "carol", "key": ukey},
		"flows": []any{map[string]any{"name": "two-sre-leads", "stages": []any{
			map[string]any{"name": "leads", "groups": []any{"sre-leads"}, "required": 2, "deadline_seconds": 1800},
		}}},
		"expires_at": "2025-03-14T09:56:53Z",
	})
}

func stateAsk() doc {
	return envelope("writ.request.state.v1", map[string]any{
		"prev": "", "domain": "acme", "by": map[string]any{"domain": "acme", "name": "bob"}, "identity": jwt,
		"path": "prod/db", "op": "set", "attrs": map[string]any{"on_call": "alice"}, "merge": true, "reason": "rotation",
	})
}

func stated() doc {
	return envelope("writ.request.stated.v1", map[string]any{
		"prev": digest, "by": map[string]any{"domain": "acme", "name": "bob"},
		"path": "prod/db", "op": "set", "attrs": map[string]any{"on_call": "alice"},
	})
}

// edit returns a deep copy of d with the value at path set, or removed if v is del.
func (d doc) edit(t *testing.T, path string, v any) []byte {
	t.Helper()
	b, err := json.Marshal(d)
	require.NoError(t, err)
	var c map[string]any
	require.NoError(t, json.Unmarshal(b, &c))
	keys := strings.Split(path, ".")
	m := c
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		require.True(t, ok, "no object at %q in %s", k, path)
		m = next
	}
	if v == del {
		_, ok := m[keys[len(keys)-1]]
		require.True(t, ok, "nothing to delete at %s", path)
		delete(m, keys[len(keys)-1])
	} else {
		m[keys[len(keys)-1]] = v
	}
	b, err = json.Marshal(c)
	require.NoError(t, err)
	return b
}

// editDoc is edit, as a doc to edit further.
func (d doc) editDoc(t *testing.T, path string, v any) doc {
	t.Helper()
	var out doc
	require.NoError(t, json.Unmarshal(d.edit(t, path, v), &out))
	return out
}

type deletion struct{}

var del = deletion{}

func TestValidateAcceptsBaseDocuments(t *testing.T) {
	for name, d := range map[string]doc{"requested": requested(), "voted": voted(), "granted": granted(), "evaluated": evaluated(),
		"state": stateAsk(), "stated": stated()} {
		t.Run(name, func(t *testing.T) {
			b, err := json.Marshal(d)
			require.NoError(t, err)
			assert.NoError(t, schemas.Validate(d["type"].(string), b))
		})
	}
}

func TestValidate(t *testing.T) {
	s := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name string
		d    doc
		path string
		v    any
		ok   bool
	}{
		// Boundaries that must pass, so that the refusals below are refusals of the value.
		{"ttl 0 means the default", requested(), "data.ttl_seconds", 0, true},
		{"ttl 10s", requested(), "data.ttl_seconds", 10, true},
		{"ttl 24h", requested(), "data.ttl_seconds", 86400, true},
		{"no ttl", requested(), "data.ttl_seconds", del, true},
		{"urgency critical", requested(), "data.urgency", "critical", true},
		{"first event has an empty prev", requested(), "data.prev", "", true},
		{"prev digest", requested(), "data.prev", digest, true},
		{"reason of 2048", requested(), "data.reason", s(2048), true},
		{"resource of 512", requested(), "data.resource", s(512), true},
		{"action of 128", requested(), "data.action", s(128), true},
		{"ticket of 128", requested(), "data.ticket", s(128), true},
		{"no optional fields", requested(), "data.params", del, true},
		{"time with offset", requested(), "time", "2025-03-14T10:26:53+01:00", true},

		{"missing identity", requested(), "data.identity", del, false},
		{"missing holder xkey", requested(), "data.holder_xkey", del, false},
		{"missing urgency", requested(), "data.urgency", del, false},
		{"missing prev", requested(), "data.prev", del, false},
		{"missing requester name", requested(), "data.requester.name", del, false},
		{"missing envelope time", requested(), "time", del, false},
		{"missing data", requested(), "data", del, false},
		{"extra data field", requested(), "data.approved", true, false},
		{"extra requester field", requested(), "data.requester.admin", true, false},
		{"extra envelope field", requested(), "signature", "x", false},
		{"bad urgency", requested(), "data.urgency", "urgent", false},
		{"ttl 5s", requested(), "data.ttl_seconds", 5, false},
		{"ttl 9s", requested(), "data.ttl_seconds", 9, false},
		{"ttl above 24h", requested(), "data.ttl_seconds", 86401, false},
		{"negative ttl", requested(), "data.ttl_seconds", -1, false},
		{"fractional ttl", requested(), "data.ttl_seconds", 60.5, false},
		{"ttl as string", requested(), "data.ttl_seconds", "600", false},
		{"reason of 2049", requested(), "data.reason", s(2049), false},
		{"resource of 513", requested(), "data.resource", s(513), false},
		{"action of 129", requested(), "data.action", s(129), false},
		{"ticket of 129", requested(), "data.ticket", s(129), false},
		{"requester name of 129", requested(), "data.requester.name", s(129), false},
		{"identity above 8192", requested(), "data.identity", s(4000) + "." + s(4000) + "." + s(200), false},
		{"param value of 1025", requested(), "data.params", map[string]any{"k": s(1025)}, false},
		{"param name with a dash", requested(), "data.params", map[string]any{"bad-name": "v"}, false},
		{"param value not a string", requested(), "data.params", map[string]any{"n": 1}, false},
		{"too many params", requested(), "data.params", manyParams(65), false},
		{"resource with a space", requested(), "data.resource", "prod/my db", false},
		{"empty resource", requested(), "data.resource", "", false},
		{"action starting with a dot", requested(), "data.action", ".restart", false},
		{"upper-case requester domain", requested(), "data.requester.domain", "ACME", false},
		{"identity that is not a JWT", requested(), "data.identity", "not a token at all", false},
		{"holder key that is a user key", requested(), "data.holder_xkey", ukey, false},
		{"prev that is not a digest", requested(), "data.prev", "sha256:abc", false},
		{"spec version 0.3", requested(), "specversion", "0.3", false},
		{"subject with upper-case UUID", requested(), "subject", strings.ToUpper(uuid), false},
		{"time that is not a date-time", requested(), "time", "yesterday", false},
		{"content type text", requested(), "datacontenttype", "text/plain", false},
		{"data that is an array", requested(), "data", []any{}, false},
		{"another type inside", requested(), "type", "writ.request.voted.v1", false},

		{"vote abstain", voted(), "data.decision", "abstain", false},
		{"vote without the digest it answers", voted(), "data.request_digest", del, false},
		{"vote answering an empty digest", voted(), "data.request_digest", "", false},

		{"grant with the token in clear", granted(), "data.token", "eyJ...", false},
		{"grant to an account key", granted(), "data.holder", "A" + ukey[1:], false},
		{"grant without expiry", granted(), "data.expires_at", del, false},

		{"evaluation with the state revisions it read", evaluated(), "data.state_revisions", map[string]any{"acme.prod.db": 7, "acme._domain": 0}, true},
		{"evaluation with a negative revision", evaluated(), "data.state_revisions", map[string]any{"acme.prod.db": -1}, false},
		{"evaluation with a revision as a string", evaluated(), "data.state_revisions", map[string]any{"acme.prod.db": "7"}, false},

		{"state of the domain itself", stateAsk(), "data.path", del, true},
		{"state without a reason", stateAsk(), "data.reason", del, true},
		{"state with 64 attributes", stateAsk(), "data.attrs", manyParams(64), true},
		{"state value of 4096", stateAsk(), "data.attrs", map[string]any{"k": s(4096)}, true},
		{"state attribute named with a dash", stateAsk(), "data.attrs", map[string]any{"on-call": "alice"}, true},
		{"state set without attributes", stateAsk(), "data.attrs", del, false},
		{"state set of no attribute", stateAsk(), "data.attrs", map[string]any{}, false},
		{"state with 65 attributes", stateAsk(), "data.attrs", manyParams(65), false},
		{"state value of 4097", stateAsk(), "data.attrs", map[string]any{"k": s(4097)}, false},
		{"state attribute of an empty name", stateAsk(), "data.attrs", map[string]any{"": "x"}, false},
		{"state value that is a number", stateAsk(), "data.attrs", map[string]any{"k": 1}, false},
		{"state delete with attributes", stateAsk(), "data.op", "delete", false},
		{"state of another operation", stateAsk(), "data.op", "append", false},
		{"state with an empty path", stateAsk(), "data.path", "", false},
		{"state with a dot-dot path", stateAsk(), "data.path", "prod/../db", false},
		{"state with a blank reason", stateAsk(), "data.reason", "", false},
		{"state without its signed domain", stateAsk(), "data.domain", del, false},
		{"stated delete", stated().editDoc(t, "data.attrs", del), "data.op", "delete", true},
		{"stated delete with attributes", stated(), "data.op", "delete", false},
		{"stated set without attributes", stated(), "data.attrs", del, false},

		{"evaluation with an unknown outcome", evaluated(), "data.outcome", "maybe", false},
		{"evaluation without a policy digest", evaluated(), "data.policy_digest", del, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.d.edit(t, tt.path, tt.v)
			err := schemas.Validate(tt.d["type"].(string), b)
			if tt.ok {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, schemas.ErrInvalid)
			assert.NotContains(t, err.Error(), "\n", "a validation error fits on one line")
		})
	}
}

func manyParams(n int) map[string]any {
	m := map[string]any{}
	for i := range n {
		m["p"+strings.Repeat("x", i)] = "v"
	}
	return m
}

func TestValidateNamesThePlace(t *testing.T) {
	err := schemas.Validate("writ.request.requested.v1", requested().edit(t, "data.urgency", "urgent"))
	require.ErrorIs(t, err, schemas.ErrInvalid)
	assert.Contains(t, err.Error(), "/data/urgency")
}

func TestValidateRefuses(t *testing.T) {
	body, err := json.Marshal(requested())
	require.NoError(t, err)
	tests := []struct {
		name      string
		eventType string
		body      []byte
		want      error
	}{
		{"unknown type", "writ.request.cancelled.v1", body, schemas.ErrUnknownType},
		{"unknown version", "writ.request.requested.v2", body, schemas.ErrUnknownType},
		{"the envelope is not an event type", "envelope", body, schemas.ErrUnknownType},
		{"not JSON", "writ.request.requested.v1", []byte("{"), schemas.ErrInvalid},
		{"two documents", "writ.request.requested.v1", append(slices.Clone(body), body...), schemas.ErrInvalid},
		{"empty", "writ.request.requested.v1", nil, schemas.ErrInvalid},
		{"null", "writ.request.requested.v1", []byte("null"), schemas.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := schemas.Validate(tt.eventType, tt.body)
			assert.ErrorIs(t, err, tt.want)
			other := schemas.ErrInvalid
			if errors.Is(tt.want, schemas.ErrInvalid) {
				other = schemas.ErrUnknownType
			}
			assert.NotErrorIs(t, err, other)
		})
	}
}

func TestTypesAndFS(t *testing.T) {
	types := schemas.Types()
	slices.Sort(types)
	want := []string{
		"writ.audit.checkpoint.v1", "writ.audit.witnessed.v1",
		"writ.request.alerted.v1", "writ.request.alerted.v2", "writ.request.approved.v1", "writ.request.counted.v1", "writ.request.denied.v1", "writ.request.escalated.v1", "writ.request.evaluated.v1",
		"writ.request.expired.v1", "writ.request.granted.v1", "writ.request.lock.v1", "writ.request.locked.v1", "writ.request.policy.v1", "writ.request.redeemed.v1",
		"writ.request.refused.v1", "writ.request.rejected.v1", "writ.request.requested.v1",
		"writ.request.reviewed.v1", "writ.request.reviewed.v2", "writ.request.revoke.v1", "writ.request.revoked.v1", "writ.request.state.v1",
		"writ.request.stated.v1", "writ.request.voted.v1",
	}
	assert.Equal(t, want, types)
	for _, typ := range want {
		b, err := fs.ReadFile(schemas.FS(), typ+".json")
		require.NoError(t, err)
		var s struct {
			ID         string `json:"$id"`
			Properties struct {
				Type struct {
					Const string `json:"const"`
				} `json:"type"`
			} `json:"properties"`
		}
		require.NoError(t, json.Unmarshal(b, &s))
		assert.Equal(t, "https://writ.dev/schemas/"+typ+".json", s.ID)
		assert.Equal(t, typ, s.Properties.Type.Const, "a schema accepts only its own type")
	}
	_, err := fs.Stat(schemas.FS(), "envelope.json")
	assert.NoError(t, err)
}

// FuzzValidate checks that Validate never panics on arbitrary input and
// reports every refusal as one of its two sentinels.
func FuzzValidate(f *testing.F) {
	for _, d := range []doc{requested(), voted(), granted(), evaluated()} {
		b, _ := json.Marshal(d)
		f.Add(d["type"].(string), b)
	}
	f.Add("writ.request.requested.v1", []byte(`{"data":{"ttl_seconds":5}}`))
	f.Add("nope", []byte(`[]`))
	f.Fuzz(func(t *testing.T, eventType string, body []byte) {
		err := schemas.Validate(eventType, body)
		if err != nil && !errors.Is(err, schemas.ErrInvalid) && !errors.Is(err, schemas.ErrUnknownType) {
			t.Fatalf("refusal without a sentinel: %v", err)
		}
		if err == nil && !json.Valid(body) {
			t.Fatalf("accepted a body that is not JSON: %q", body)
		}
	})
}

// A resource has one spelling: no empty, "." or ".." segments, so that a
// policy on "prod/*" cannot be stepped around with "dev/../prod/db".
func TestValidateResourcePaths(t *testing.T) {
	for _, bad := range []string{"dev/../prod/db", "./prod/db", "prod//db", "/prod/db", "prod/db/", "prod/.", "..", ".env"} {
		err := schemas.Validate("writ.request.requested.v1", requested().edit(t, "data.resource", bad))
		assert.Error(t, err, bad)
	}
	for _, ok := range []string{"prod/db", "dev/x.y", "a"} {
		assert.NoError(t, schemas.Validate("writ.request.requested.v1", requested().edit(t, "data.resource", ok)), ok)
	}
}
