package consumers_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/state"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/request"
)

// badLimit is the corpus pipeline's limits.max_event_bytes: below the
// default, so that a body the default would take shows the configured
// limit is the one applied.
const badLimit = 48 << 10

// TestBadInputCorpus publishes a corpus of bad input into one running
// pipeline — truncated, huge and deeply nested bodies, wrong types in every
// field of a request, unknown kinds, junk subjects, missing, broken, forged
// and untrusted signatures, replayed messages — on fresh requests and into a
// request waiting for approvers. Each input on a request is answered with a
// specific code, once; nothing panics, nothing is left undelivered or
// retried; the waiting request is still decided by its approvers, and a
// request sent after the whole corpus is still granted.
// (TestBadInputIsRejected has one of each other rejection code.)
func TestBadInputCorpus(t *testing.T) {
	e := writtest.Start(t, writtest.Options{MaxEventBytes: badLimit, NoServe: true})
	logs := &warnings{}
	e.Logger = slog.New(logs)
	e.Serve("")
	c := newCorpus(t, e)

	// A request waiting for two SRE leads: bad input lands in its history.
	pending := submit(t, e, e.Identity("carol"), client.Spec{Action: "restart", Resource: "prod/db"})
	waitFor(t, e, pending, func(s request.State) bool { return s.Status.IsPending() })

	t.Run("on new requests", func(t *testing.T) {
		for _, tc := range c.requestCases() {
			t.Run(tc.name, func(t *testing.T) {
				m := tc.msg(t, newID(t))
				_, id, _, err := events.ParseSubject(m.Subject)
				require.NoError(t, err)
				seq, dup := publishRaw(t, e, m)
				require.False(t, dup)
				r := waitFor(t, e, id, func(s request.State) bool { return s.Status.IsTerminal() })
				require.Equal(t, request.StatusRejected, r.State.Status)
				assert.Equal(t, []string{"requested", "rejected"}, writtest.Kinds(r))
				rej := r.State.Rejection
				assert.Equal(t, tc.code, rej.Code, "%s", rej.Reason)
				assert.Equal(t, seq, rej.RefSeq)
				assert.NotEmpty(t, rej.Reason)
			})
		}
	})

	t.Run("into a pending request", func(t *testing.T) {
		for _, tc := range c.pendingCases() {
			t.Run(tc.name, func(t *testing.T) {
				m := tc.msg(t, pending)
				seq, dup := publishRaw(t, e, m)
				require.False(t, dup)
				r := waitFor(t, e, pending, func(s request.State) bool { return s.Answered[seq] != "" })
				assert.Equal(t, tc.code, r.State.Answered[seq])
				require.Equal(t, request.StatusPending, r.State.Status, "bad input decides nothing")
				ref := refusalOf(t, r, seq)
				_, _, kind, err := events.ParseSubject(m.Subject)
				require.NoError(t, err)
				assert.Equal(t, kind.String(), ref.RefKind)
			})
		}
	})

	t.Run("a request of exactly the limit is granted", func(t *testing.T) {
		id := newID(t)
		_, dup := publishRaw(t, e, natsMsg(c.sized(t, id, badLimit)))
		require.False(t, dup)
		r := waitFor(t, e, id, client.Settled)
		assert.Equal(t, request.StatusGranted, r.State.Status, "%v: %v", writtest.Kinds(r), r.Errs)
	})

	t.Run("a request id in upper case", func(t *testing.T) {
		id := strings.ToUpper(newID(t))
		_, dup := publishRaw(t, e, natsMsg(sealRequest(t, c.bot, id, botDeploy, nil)))
		require.False(t, dup)
		awaitQuiet(t, e)
		r := load(t, e, id)
		for _, rec := range r.Records[1:] {
			assert.True(t, rec.Valid(), "the pipeline appended %s, which no reader trusts: %v", rec.Kind, rec.Err)
		}
	})

	t.Run("a genuine vote replayed", func(t *testing.T) {
		cast := vote(t, e, e.Identity("alice"), pending, true)
		r := waitFor(t, e, pending, func(s request.State) bool { return s.VoteAnswered(cast) })
		require.Len(t, r.State.Votes, 1)
		stored := lastOf(t, r, events.KindVoted)

		// As stored, it still carries the expected last sequence it was
		// appended with: the server refuses it.
		js, err := jetstream.New(e.NC)
		require.NoError(t, err)
		verbatim := &nats.Msg{Subject: stored.Subject, Data: stored.Body, Header: nats.Header(stored.Header)}
		_, err = js.PublishMsg(t.Context(), verbatim)
		var apiErr *jetstream.APIError
		require.ErrorAs(t, err, &apiErr, "a verbatim replay is refused")
		assert.Equal(t, jetstream.JSErrCodeStreamWrongLastSequence, apiErr.ErrorCode)

		// Without the expectation, same id and body: the server drops it
		// within its duplicate window.
		again := storedMsg(stored)
		require.NotEmpty(t, again.Header.Get(events.HeaderMsgID), "stored with its message id")
		seq, dup := publishRaw(t, e, again)
		assert.True(t, dup, "the server took a replay of message id %s", again.Header.Get(events.HeaderMsgID))
		assert.Equal(t, stored.Seq, seq)
		assert.Len(t, load(t, e, pending).Records, len(r.Records), "one copy stored")

		// Same body, new id: stored, and refused. Its prev is the event
		// before the original, so its chain is broken before it is a
		// second vote.
		again = storedMsg(stored)
		again.Header.Set(events.HeaderMsgID, newID(t))
		seq, dup = publishRaw(t, e, again)
		require.False(t, dup)
		r = waitFor(t, e, pending, func(s request.State) bool { return s.Answered[seq] != "" })
		assert.Equal(t, "broken-chain", r.State.Answered[seq])
		assert.Len(t, r.State.Votes, 1, "counted once")
	})

	t.Run("unknown kinds and junk subjects", func(t *testing.T) {
		body := []byte(`{"specversion":"1.0"}`)
		fresh := newID(t)
		under := func(id string) string { return events.Prefix + "." + writtest.Domain + "." + id }
		notUUID := strings.ReplaceAll(fresh, "-", "_")
		junk := []string{
			under(fresh) + ".frobnicated", under(pending) + ".frobnicated",
			under("not-a-request") + ".requested", under("not-a-request") + ".voted", under(notUUID) + ".evaluated",
		}
		for _, s := range junk {
			_, dup := publishRaw(t, e, &nats.Msg{Subject: s, Data: body, Header: nats.Header{}})
			require.False(t, dup, s)
		}
		awaitQuiet(t, e)
		// Nobody can answer what belongs to no request, or to no kind:
		// each stays alone under its id, and the pending request's
		// history takes it as a record that changes nothing.
		r := load(t, e, fresh)
		require.Len(t, r.Records, 1)
		assert.Equal(t, "bad-subject", request.Code(r.Errs[r.Records[0].Seq]))
		for id, n := range map[string]int{"not-a-request": 2, notUUID: 1} {
			msgs, err := store.Reader{NC: e.NC, Stream: consumers.DefaultStream}.Load(t.Context(), under(id)+".>", 1)
			require.NoError(t, err)
			assert.Len(t, msgs, n, "nothing was appended under %s", id)
		}
		r = load(t, e, pending)
		assert.Equal(t, request.StatusPending, r.State.Status)
		last := r.Records[len(r.Records)-1]
		assert.Equal(t, events.KindNone, last.Kind)
		assert.Equal(t, "bad-subject", request.Code(r.Errs[last.Seq]))
	})

	t.Run("the pending request is still decided", func(t *testing.T) {
		vote(t, e, e.Identity("bob"), pending, true)
		r := waitFor(t, e, pending, client.Settled)
		require.Equal(t, request.StatusGranted, r.State.Status, "%v", writtest.Kinds(r))
		valid := map[events.Kind]int{}
		for _, rec := range r.Records {
			if rec.Valid() {
				valid[rec.Kind]++
			}
		}
		for _, k := range []events.Kind{events.KindRequested, events.KindEvaluated, events.KindApproved, events.KindGranted} {
			assert.Equal(t, 1, valid[k], "genuine %s events: %v", k, writtest.Kinds(r))
		}
		assert.Len(t, r.State.Votes, 2, "counted votes")
	})

	t.Run("a replayed request is stored once and granted once", func(t *testing.T) {
		id := newID(t)
		out := sealRequest(t, c.bot, id, botDeploy, nil)
		first, dup := publishRaw(t, e, natsMsg(out))
		require.False(t, dup)
		seq, dup := publishRaw(t, e, natsMsg(out))
		assert.True(t, dup, "the server took a replay of message id %s", out.MsgID)
		assert.Equal(t, first, seq)
		r := waitFor(t, e, id, client.Settled)
		require.Equal(t, request.StatusGranted, r.State.Status)
		assert.Equal(t, []string{"requested", "evaluated", "granted"}, writtest.Kinds(r))
	})

	t.Run("nothing crashed, nothing is stuck", func(t *testing.T) {
		awaitQuiet(t, e)
		require.True(t, e.NC.IsConnected(), "the connection to the server is up")
		for _, w := range logs.all() {
			assert.NotContains(t, w, "panic", "a component panicked on bad input")
		}
		// No input was given up on as unprocessable: that is what a
		// component that panics on it every time would record.
		codes := map[string]int{}
		msgs, err := store.Reader{NC: e.NC, Stream: consumers.DefaultStream}.Load(t.Context(), events.Prefix+"."+writtest.Domain+".>", 1)
		require.NoError(t, err)
		for _, m := range msgs {
			rec := e.Client.Checker().Inspect(m, m.Time)
			if !rec.Valid() {
				continue
			}
			var ref uint64
			var code string
			switch d := rec.Data.(type) {
			case *events.Rejected:
				ref, code = d.RefSeq, d.Code
			case *events.Refused:
				ref, code = d.RefSeq, d.Code
			default:
				continue
			}
			codes[fmt.Sprintf("%s#%d", rec.RequestID, ref)]++
			assert.NotEqual(t, consumers.CodeUnprocessable, code)
		}
		for ref, n := range codes {
			assert.Equal(t, 1, n, "input %s answered %d times", ref, n)
		}
	})

	// After all that, a request goes through as ever.
	id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/after-the-corpus"})
	assert.Equal(t, request.StatusGranted, e.Settle(id).State.Status)
}

// corpus holds what the bad inputs are made from.
type corpus struct {
	e        *writtest.Env
	bot      *identity.Identity
	stranger *identity.Identity // an acme identity signed by an account acme does not trust; its key signs forgeries
	account  nkeys.KeyPair      // acme's own account key
}

func newCorpus(t *testing.T, e *writtest.Env) *corpus {
	account, err := identity.LoadSeed(filepath.Join(e.Dir, "keys", "account.nk"))
	require.NoError(t, err)
	return &corpus{
		e: e, bot: e.Identity("deploy-bot"), account: account,
		stranger: issue(t, mustAccount(t), identity.UserSpec{Domain: writtest.Domain, Name: "alice", Groups: []string{"sre-leads"}}),
	}
}

// badCase is one bad input and the code it must be answered with.
type badCase struct {
	name string
	code string
	msg  func(t *testing.T, id string) *nats.Msg
}

var botDeploy = client.Spec{Action: "deploy", Resource: "staging/web"}

// requestCases are bad inputs on a new request's subject; each is
// answered with a rejection.
func (c *corpus) requestCases() []badCase {
	signed := func(t *testing.T, id string) events.Outgoing { return sealRequest(t, c.bot, id, botDeploy, nil) }
	// raw is the genuine request's headers over another body: the
	// signature is for the genuine one.
	raw := func(body func(good []byte) []byte) func(t *testing.T, id string) *nats.Msg {
		return func(t *testing.T, id string) *nats.Msg {
			out := signed(t, id)
			m := natsMsg(out)
			m.Data = body(out.Body)
			return m
		}
	}
	// resigned is a body made from the genuine one, signed by the bot.
	resigned := func(body func(t *testing.T, good []byte) []byte) func(t *testing.T, id string) *nats.Msg {
		return func(t *testing.T, id string) *nats.Msg {
			out := signed(t, id)
			return natsMsg(resign(t, c.bot.Key, out, body(t, out.Body)))
		}
	}
	headers := func(edit func(t *testing.T, out events.Outgoing, m *nats.Msg)) func(t *testing.T, id string) *nats.Msg {
		return func(t *testing.T, id string) *nats.Msg {
			out := signed(t, id)
			m := natsMsg(out)
			edit(t, out, m)
			return m
		}
	}
	nested := func(depth int) func([]byte) []byte {
		return func([]byte) []byte { return []byte(strings.Repeat("[", depth) + strings.Repeat("]", depth)) }
	}
	cases := []badCase{
		{"empty body", "malformed", raw(func([]byte) []byte { return nil })},
		{"one byte of it", "malformed", raw(func(b []byte) []byte { return b[:1] })},
		{"cut in half, signature of the whole", "malformed", raw(func(b []byte) []byte { return b[:len(b)/2] })},
		{"all but its last byte", "malformed", raw(func(b []byte) []byte { return b[:len(b)-1] })},
		{"binary", "malformed", raw(func([]byte) []byte { return []byte{0xff, 0xfe, 0, 1, '{'} })},
		{"invalid UTF-8 in the resource", "schema", resigned(func(_ *testing.T, b []byte) []byte {
			return []byte(strings.Replace(string(b), `"staging/web"`, "\"staging/\xff\"", 1))
		})},
		{"a JSON array", "malformed", raw(func([]byte) []byte { return []byte(`[1,2,3]`) })},
		{"a JSON string", "malformed", raw(func([]byte) []byte { return []byte(`"requested"`) })},
		{"null", "type-mismatch", raw(func([]byte) []byte { return []byte(`null`) })},
		{"an empty object", "type-mismatch", raw(func([]byte) []byte { return []byte(`{}`) })},
		{"nested 20,000 deep, under the limit", "malformed", raw(nested(20_000))},
		{"nested 100,000 deep, over the limit", "oversized", raw(nested(100_000))},
		{"100,000 unclosed brackets", "oversized", raw(func([]byte) []byte { return []byte(strings.Repeat("[", 100_000)) })},
		{"nested 40,000 unclosed brackets, under the limit", "malformed", raw(func([]byte) []byte { return []byte(strings.Repeat("[", 40_000)) })},
		{"nested 9,000 deep in its params", "schema", resigned(func(t *testing.T, b []byte) []byte {
			return setJSON(t, b, "data.params", json.RawMessage(strings.Repeat("[", 9000)+strings.Repeat("]", 9000)))
		})},
		{"one byte over the limit", "oversized", func(t *testing.T, id string) *nats.Msg { return natsMsg(c.sized(t, id, badLimit+1)) }},
		// A key twice in one object is refused before any parser can
		// read it one way and the schema another.
		{"a second resource with a .. segment", "malformed", resigned(func(_ *testing.T, b []byte) []byte {
			return []byte(strings.Replace(string(b), `"resource":"staging/web"`, `"resource":"staging/web","resource":"staging/../prod/db"`, 1))
		})},
		{"a second params object", "malformed", resigned(func(_ *testing.T, b []byte) []byte {
			return []byte(strings.Replace(string(b), `"resource":"staging/web"`, `"resource":"staging/web","params":{"bad key!":"x"},"params":{}`, 1))
		})},
		{"a field missing", "schema", resigned(func(t *testing.T, b []byte) []byte { return deleteJSON(t, b, "data.identity") })},
		{"another request's id inside", "type-mismatch", resigned(func(t *testing.T, b []byte) []byte { return setJSON(t, b, "subject", newID(t)) })},
		{"another kind's type", "type-mismatch", resigned(func(t *testing.T, b []byte) []byte { return setJSON(t, b, "type", events.TypeVoted) })},

		{"no signature header", "unsigned", headers(func(_ *testing.T, _ events.Outgoing, m *nats.Msg) { m.Header.Del(events.HeaderSignature) })},
		{"no signer header", "unsigned", headers(func(_ *testing.T, _ events.Outgoing, m *nats.Msg) { m.Header.Del(events.HeaderSigner) })},
		{"a signature that is not base64url", "bad-signature", headers(func(_ *testing.T, _ events.Outgoing, m *nats.Msg) {
			m.Header.Set(events.HeaderSignature, "!!"+m.Header.Get(events.HeaderSignature)[2:])
		})},
		{"a signature cut short", "bad-signature", headers(func(_ *testing.T, _ events.Outgoing, m *nats.Msg) {
			m.Header.Set(events.HeaderSignature, m.Header.Get(events.HeaderSignature)[:40])
		})},
		{"a signer that is not a key", "bad-signature", headers(func(_ *testing.T, _ events.Outgoing, m *nats.Msg) {
			m.Header.Set(events.HeaderSigner, "deploy-bot")
		})},
		{"signed by another key, naming the bot's", "bad-signature", headers(func(t *testing.T, out events.Outgoing, m *nats.Msg) {
			m.Header.Set(events.HeaderSignature, signature(t, c.stranger.Key, out.Body))
		})},
		{"signed by the domain's account key", "signer-mismatch", headers(func(t *testing.T, out events.Outgoing, m *nats.Msg) {
			pub, err := c.account.PublicKey()
			require.NoError(t, err)
			m.Header.Set(events.HeaderSigner, pub)
			m.Header.Set(events.HeaderSignature, signature(t, c.account, out.Body))
		})},
		{"the bot's identity, signed by another user key", "signer-mismatch", func(t *testing.T, id string) *nats.Msg {
			kp, out := c.stranger.Key, signed(t, id)
			return natsMsg(resign(t, kp, withSigner(t, kp, out), out.Body))
		}},
		{"claims carol, carries the bot's identity", "identity-mismatch", func(t *testing.T, id string) *nats.Msg {
			return natsMsg(sealRequest(t, c.bot, id, botDeploy, func(d *events.Requested) { d.Requester.Name = "carol" }))
		}},
		{"an identity whose JWT was edited", "identity-malformed", func(t *testing.T, id string) *nats.Msg {
			return natsMsg(sealRequest(t, c.bot, id, botDeploy, func(d *events.Requested) { d.Identity = editJWT(t, d.Identity) }))
		}},
		{"an identity without a domain", "identity-no-domain", func(t *testing.T, id string) *nats.Msg {
			who := c.handmade(t, func(uc *jwt.UserClaims) { uc.Tags = jwt.TagList{"group:bots"} })
			return natsMsg(sealRequest(t, who, id, botDeploy, func(d *events.Requested) { d.Requester.Domain = writtest.Domain }))
		}},
		{"an identity not valid yet", "identity-not-yet-valid", func(t *testing.T, id string) *nats.Msg {
			who := c.handmade(t, func(uc *jwt.UserClaims) { uc.NotBefore = time.Now().Add(time.Hour).Unix() })
			return natsMsg(sealRequest(t, who, id, botDeploy, nil))
		}},
		{"an identity signed by a user key, not an account", "identity-malformed", func(t *testing.T, id string) *nats.Msg {
			return natsMsg(sealRequest(t, c.handmadeBy(t, c.stranger.Key, nil), id, botDeploy, nil))
		}},
	}
	// Wrong types, one field at a time: the envelope's fields do not
	// decode (malformed); the data is its schema's to refuse.
	wrong := []struct {
		path string
		v    any
		code string
	}{
		{"specversion", 1.0, "malformed"}, {"id", 7, "malformed"}, {"source", []int{1}, "malformed"},
		{"type", true, "malformed"}, {"subject", 42, "malformed"}, {"time", 1700000000, "malformed"},
		{"datacontenttype", map[string]any{}, "malformed"}, {"data", "deploy staging/web", "schema"},
		{"data.prev", 0, "schema"}, {"data.domain", 1, "schema"}, {"data.requester", "acme/deploy-bot", "schema"},
		{"data.requester.domain", 1, "schema"}, {"data.requester.name", []string{"deploy-bot"}, "schema"},
		{"data.identity", map[string]any{"jwt": true}, "schema"}, {"data.action", []string{"deploy"}, "schema"},
		{"data.resource", 5, "schema"}, {"data.params", []string{"a=b"}, "schema"}, {"data.params", map[string]any{"n": 1}, "schema"},
		{"data.urgency", 3, "schema"}, {"data.reason", false, "schema"}, {"data.ticket", map[string]any{}, "schema"},
		{"data.ttl_seconds", "600", "schema"}, {"data.ttl_seconds", 60.5, "schema"}, {"data.holder_xkey", nil, "schema"},
	}
	for _, w := range wrong {
		cases = append(cases, badCase{fmt.Sprintf("%s as %T", w.path, w.v), w.code, resigned(func(t *testing.T, b []byte) []byte { return setJSON(t, b, w.path, w.v) })})
	}
	return cases
}

// pendingCases are bad inputs into a pending request's history; each is
// refused.
func (c *corpus) pendingCases() []badCase {
	alice := c.e.Identity("alice")
	ballot := func(t *testing.T, who *identity.Identity, id string, edit func(*events.Voted)) events.Outgoing {
		r := load(t, c.e, id)
		d := &events.Voted{Prev: r.State.LastDigest, Domain: writtest.Domain, Voter: events.PrincipalRef{Domain: who.Principal.Domain, Name: who.Principal.Name},
			Identity: who.JWT, Decision: events.DecisionApprove, RequestDigest: r.State.RequestDigest}
		if edit != nil {
			edit(d)
		}
		out, err := events.Seal(events.Draft{Domain: writtest.Domain, RequestID: id, Kind: events.KindVoted, Ordinal: who.Principal.Key,
			Source: "writ://acme/principals/" + who.Principal.Name, Time: time.Now(), Data: d}, who.Key)
		require.NoError(t, err)
		return out
	}
	return []badCase{
		{"a vote cut in half", "malformed", func(t *testing.T, id string) *nats.Msg {
			out := ballot(t, alice, id, nil)
			return natsMsg(resign(t, alice.Key, out, out.Body[:len(out.Body)/2]))
		}},
		{"an unsigned vote", "unsigned", func(t *testing.T, id string) *nats.Msg {
			m := natsMsg(ballot(t, alice, id, nil))
			m.Header.Del(events.HeaderSignature)
			return m
		}},
		{"a vote whose decision is a number", "schema", func(t *testing.T, id string) *nats.Msg {
			out := ballot(t, alice, id, nil)
			return natsMsg(resign(t, alice.Key, out, setJSON(t, out.Body, "data.decision", 1)))
		}},
		{"a vote by an identity of an untrusted account", "untrusted-key", func(t *testing.T, id string) *nats.Msg {
			return natsMsg(ballot(t, c.stranger, id, nil))
		}},
		{"alice's vote signed by another key", "signer-mismatch", func(t *testing.T, id string) *nats.Msg {
			kp, out := c.stranger.Key, ballot(t, alice, id, nil)
			return natsMsg(resign(t, kp, withSigner(t, kp, out), out.Body))
		}},
		{"a vote for another domain", "wrong-domain", func(t *testing.T, id string) *nats.Msg {
			return natsMsg(ballot(t, alice, id, func(d *events.Voted) { d.Domain = "beta" }))
		}},
		{"a vote one byte over the limit", "oversized", func(t *testing.T, id string) *nats.Msg {
			out := ballot(t, alice, id, nil)
			return natsMsg(resign(t, alice.Key, out, setJSON(t, out.Body, "data.reason", strings.Repeat("x", badLimit))))
		}},
		{"an evaluation signed by an unknown key", "signer-not-entitled", func(t *testing.T, id string) *nats.Msg {
			r := load(t, c.e, id)
			out, err := events.Seal(events.Draft{Domain: writtest.Domain, RequestID: id, Kind: events.KindEvaluated, Source: "writ://acme/policy",
				Time: time.Now(), Data: &events.Evaluated{Prev: r.State.LastDigest, Outcome: events.OutcomeAllow, Reasons: []string{},
					PolicyDigest: events.Digest(nil), FlowsDigest: events.Digest(nil), Principal: events.EvaluatedPrincipal{Domain: "acme", Name: "carol", Key: r.State.Requester.Key}},
			}, mustServerKey(t))
			require.NoError(t, err)
			return natsMsg(out)
		}},
		{"an evaluation that is not JSON", "malformed", func(t *testing.T, id string) *nats.Msg {
			return &nats.Msg{Subject: events.Subject(writtest.Domain, id, events.KindEvaluated), Data: []byte("allow!"), Header: nats.Header{}}
		}},
	}
}

// sized is a genuine request whose body is exactly n bytes, padded in its
// params.
func (c *corpus) sized(t *testing.T, id string, n int) events.Outgoing {
	t.Helper()
	at := time.Now().UTC().Truncate(time.Second) // a fixed length of time stamp
	seal := func(params map[string]string) events.Outgoing {
		xkey, err := issuer.HolderXKey(c.bot.Key, id)
		require.NoError(t, err)
		xpub, err := xkey.PublicKey()
		require.NoError(t, err)
		out, err := events.Seal(events.Draft{Domain: writtest.Domain, RequestID: id, Kind: events.KindRequested,
			Source: "writ://acme/principals/deploy-bot", Time: at, Data: &events.Requested{
				Domain: writtest.Domain, Requester: events.PrincipalRef{Domain: writtest.Domain, Name: "deploy-bot"},
				Identity: c.bot.JWT, Action: botDeploy.Action, Resource: botDeploy.Resource, Urgency: "normal", HolderXKey: xpub, Params: params,
			}}, c.bot.Key)
		require.NoError(t, err)
		return out
	}
	// Params of up to 1024 characters each; the last one takes up the rest.
	params := map[string]string{}
	for i := 0; ; i++ {
		require.Less(t, i, 64, "cannot pad a request to %d bytes", n)
		k := fmt.Sprintf("p%02d", i)
		params[k] = ""
		short := n - len(seal(params).Body)
		require.GreaterOrEqual(t, short, 0, "a request of %d bytes is too small to pad", n)
		params[k] = strings.Repeat("x", min(short, 1024))
		if short <= 1024 {
			break
		}
	}
	out := seal(params)
	require.Len(t, out.Body, n)
	return out
}

// handmade is an identity for deploy-bot signed by acme's account, with
// claims edit changed.
func (c *corpus) handmade(t *testing.T, edit func(*jwt.UserClaims)) *identity.Identity {
	return c.handmadeBy(t, c.account, edit)
}

func (c *corpus) handmadeBy(t *testing.T, signer nkeys.KeyPair, edit func(*jwt.UserClaims)) *identity.Identity {
	t.Helper()
	user, err := nkeys.CreateUser()
	require.NoError(t, err)
	pub, err := user.PublicKey()
	require.NoError(t, err)
	uc := jwt.NewUserClaims(pub)
	uc.Name = "deploy-bot"
	uc.Tags = jwt.TagList{identity.TagDomain + writtest.Domain, identity.TagGroup + "bots"}
	if edit != nil {
		edit(uc)
	}
	token, err := uc.Encode(signer)
	if err != nil {
		// The jwt package will not sign user claims with a user key:
		// put the header and claims together and sign them by hand.
		token = signJWT(t, signer, uc)
	}
	p := identity.Principal{Domain: writtest.Domain, Name: "deploy-bot", Key: pub, Groups: []string{"bots"}}
	return &identity.Identity{JWT: token, Key: user, Principal: p}
}

// signJWT encodes claims as a JWT signed by any key.
func signJWT(t *testing.T, kp nkeys.KeyPair, uc *jwt.UserClaims) string {
	t.Helper()
	pub, err := kp.PublicKey()
	require.NoError(t, err)
	uc.Issuer = pub
	uc.IssuedAt = time.Now().Unix()
	uc.Version = 2
	uc.ID = "handmade"
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"JWT","alg":"ed25519-nkey"}`))
	claims, err := json.Marshal(uc)
	require.NoError(t, err)
	payload := header + "." + base64.RawURLEncoding.EncodeToString(claims)
	sig, err := kp.Sign([]byte(payload))
	require.NoError(t, err)
	return payload + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// editJWT changes a JWT's claims and keeps its signature.
func editJWT(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	claims, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	edited := strings.Replace(string(claims), `"group:bots"`, `"group:sre-leads"`, 1)
	require.NotEqual(t, string(claims), edited)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(edited)) + "." + parts[2]
}

// setJSON replaces the value at a dotted path of a JSON body.
func setJSON(t *testing.T, body []byte, path string, v any) []byte {
	t.Helper()
	return editJSON(t, body, path, func(m map[string]any, k string) { m[k] = v })
}

func deleteJSON(t *testing.T, body []byte, path string) []byte {
	t.Helper()
	return editJSON(t, body, path, func(m map[string]any, k string) { delete(m, k) })
}

func editJSON(t *testing.T, body []byte, path string, edit func(map[string]any, string)) []byte {
	t.Helper()
	var doc map[string]any
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&doc))
	keys := strings.Split(path, ".")
	m := doc
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		require.True(t, ok, "no object at %s", k)
		m = next
	}
	edit(m, keys[len(keys)-1])
	out, err := json.Marshal(doc)
	require.NoError(t, err)
	return out
}

func signature(t *testing.T, kp nkeys.KeyPair, body []byte) string {
	t.Helper()
	sig, err := kp.Sign(body)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(sig)
}

// withSigner names kp as the event's signer.
func withSigner(t *testing.T, kp nkeys.KeyPair, out events.Outgoing) events.Outgoing {
	t.Helper()
	pub, err := kp.PublicKey()
	require.NoError(t, err)
	out.Signer = pub
	return out
}

// natsMsg is an event as a message, with its non-empty headers.
func natsMsg(out events.Outgoing) *nats.Msg {
	h := nats.Header{}
	for k, v := range out.Header() {
		if len(v) > 0 && v[0] != "" {
			h[k] = v
		}
	}
	return &nats.Msg{Subject: out.Subject, Data: out.Body, Header: h}
}

// storedMsg is a stored message as a replayer would send it: its body,
// its id and signature, without the expectations it was appended with.
func storedMsg(r events.Record) *nats.Msg {
	h := nats.Header{}
	for k, v := range r.Header {
		if !strings.HasPrefix(k, "Nats-Expected") {
			h[k] = v
		}
	}
	return &nats.Msg{Subject: r.Subject, Data: r.Body, Header: h}
}

// publishRaw stores m in the audit stream as it is and says whether the
// server took it as a duplicate.
func publishRaw(t *testing.T, e *writtest.Env, m *nats.Msg) (uint64, bool) {
	t.Helper()
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	ack, err := js.PublishMsg(t.Context(), m, jetstream.WithExpectStream(consumers.DefaultStream))
	require.NoError(t, err, "the server stores whatever is published on the stream's subjects")
	return ack.Sequence, ack.Duplicate
}

func lastOf(t *testing.T, r *client.Request, k events.Kind) events.Record {
	t.Helper()
	for i := len(r.Records) - 1; i >= 0; i-- {
		if r.Records[i].Kind == k && r.Records[i].Valid() {
			return r.Records[i]
		}
	}
	require.FailNow(t, "no such event", "%s in %v", k, writtest.Kinds(r))
	return events.Record{}
}

// refusalOf is the one refusal of the record at seq.
func refusalOf(t *testing.T, r *client.Request, seq uint64) *events.Refused {
	t.Helper()
	var found []*events.Refused
	for _, rec := range r.Records {
		if d, ok := rec.Data.(*events.Refused); ok && rec.Valid() && d.RefSeq == seq {
			found = append(found, d)
		}
	}
	require.Len(t, found, 1, "refusals of #%d", seq)
	return found[0]
}

// awaitQuiet waits until every component's durable consumer has handled every
// message it was given: nothing pending, nothing waiting for an ack.
func awaitQuiet(t *testing.T, e *writtest.Env) {
	t.Helper()
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	durables := []string{consumers.DurablePolicy, consumers.DurableApproval, consumers.DurableIssuer}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, d := range durables {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			info, err := js.Consumer(ctx, consumers.DefaultStream, d+writtest.Domain)
			if !assert.NoError(c, err) {
				cancel()
				return
			}
			ci, err := info.Info(ctx)
			cancel()
			if assert.NoError(c, err) {
				assert.Zero(c, ci.NumPending, "%s: undelivered", d)
				assert.Zero(c, ci.NumAckPending, "%s: delivered, not done", d)
			}
		}
	}, 20*time.Second, 50*time.Millisecond, "the pipeline did not settle")
}

// warnings records the warnings and errors the pipeline logs.
type warnings struct {
	mu    sync.Mutex
	lines []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	w.mu.Lock()
	w.lines = append(w.lines, b.String())
	w.mu.Unlock()
	return nil
}

func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.lines...)
}

// TestEvaluationTooLargeToRecord: the policy records the resource's state
// in its evaluation, and state that does not fit one event must still end
// the request. No change asked through the trail can be that large, and
// the approval component's keeper deletes an entry no event records, so
// this runs without it: what the policy does with such an entry until the
// keeper has removed it.
func TestEvaluationTooLargeToRecord(t *testing.T) {
	e := writtest.Start(t, writtest.Options{MaxEventBytes: badLimit, NoServe: true})
	e.ServeOnly("policy", "issuer")
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	key, err := state.Key(writtest.Domain, "staging/big")
	require.NoError(t, err)
	kv, err := js.KeyValue(t.Context(), state.Bucket)
	require.NoError(t, err)
	big, err := state.Encode(map[string]string{"notes": strings.Repeat("x", badLimit)})
	require.NoError(t, err)
	_, err = kv.Put(t.Context(), key, big)
	require.NoError(t, err)
	// The policy hears the entry by push: a request made before that
	// would be decided without it.
	var r *client.Request
	require.Eventually(t, func() bool {
		id := submit(t, e, e.Identity("deploy-bot"), client.Spec{Action: "deploy", Resource: "staging/big"})
		r = waitFor(t, e, id, client.Settled)
		return r.State.Status != request.StatusGranted
	}, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, request.StatusRejected, r.State.Status)
	assert.Equal(t, "oversized", r.State.Rejection.Code, r.State.Rejection.Reason)
	for _, rec := range r.Records {
		assert.True(t, rec.Valid(), "the pipeline appended %s, which no reader trusts: %v", rec.Kind, rec.Err)
	}
}
