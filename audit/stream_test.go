package audit_test

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// onDemand is an audit section whose auditor checkpoints only when asked:
// the tests decide when checkpoints land.
var onDemand = &config.Audit{}

// editStream changes the live audit stream's configuration as an operator
// with full rights can (e.NC has them).
func editStream(t *testing.T, e *writtest.Env, edit func(*jetstream.StreamConfig)) {
	t.Helper()
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	s, err := js.Stream(t.Context(), consumers.DefaultStream)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	edit(&cfg)
	_, err = js.UpdateStream(t.Context(), cfg)
	require.NoError(t, err)
}

// streamState is the audit stream's state as the server reports it.
func streamState(t *testing.T, e *writtest.Env) jetstream.StreamState {
	t.Helper()
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	s, err := js.Stream(t.Context(), consumers.DefaultStream)
	require.NoError(t, err)
	return s.CachedInfo().State
}

func verifyLive(t *testing.T, e *writtest.Env, o audit.Options) *audit.Report {
	t.Helper()
	o.Bundle = e.Runtime.Bundle
	rep, err := audit.VerifyStream(t.Context(), store.Reader{NC: e.NC, Stream: consumers.DefaultStream}, o, nil)
	require.NoError(t, err)
	logFindings(t, rep)
	return rep
}

// grants makes n auto-approved requests and waits for their grants.
func grants(t *testing.T, e *writtest.Env, n int) {
	t.Helper()
	for range n {
		id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
		require.Equal(t, request.StatusGranted, e.Settle(id).State.Status)
	}
}

// The whole trail gone: `nats stream edit WRIT --dupe-window=1s
// --max-age=1s`, as the operator's identity can. The stream is empty but
// says it held messages: verify fails, and the auditor signs nothing over
// it.
func TestEmptiedStreamFails(t *testing.T) {
	e := writtest.Start(t, writtest.Options{Audit: onDemand})
	grants(t, e, 2)
	made := (&run{env: e}).checkpoint(t)
	rep := verifyLive(t, e, audit.Options{})
	require.True(t, rep.OK())
	require.EqualValues(t, 1, rep.Checkpoints)

	editStream(t, e, func(c *jetstream.StreamConfig) { c.MaxAge, c.Duplicates = time.Second, time.Second })
	require.Eventually(t, func() bool { return streamState(t, e).Msgs == 0 }, 10*time.Second, 50*time.Millisecond, "the stream expires every message")
	st := streamState(t, e)
	require.Greater(t, st.FirstSeq, st.LastSeq, "empty after holding messages: first past last")

	rep = verifyLive(t, e, audit.Options{})
	assert.False(t, rep.OK(), "never OK")
	assert.Zero(t, rep.Messages)
	require.Equal(t, []string{audit.CheckTruncation}, checksOf(errorsOf(rep)))
	assert.Contains(t, errorsOf(rep)[0].Problem, "holds no message")
	require.NotNil(t, rep.Stream)
	assert.Equal(t, st.LastSeq, rep.Stream.LastSeq)
	assert.GreaterOrEqual(t, st.LastSeq, made.Seq)

	m, err := e.NC.Request(audit.CheckpointSubject(e.Domain), nil, 10*time.Second)
	require.NoError(t, err)
	assert.Contains(t, string(m.Data), "no checkpoint covered", "the auditor refuses to sign over an emptied stream")
}

// Messages dropped from the stream's start, in three steps, by lowering
// its message limit with discard old (as `nats stream edit WRIT
// --max-msgs=N --discard=old` does). A checkpoint left in the stream that
// covers what went accounts for it only where the stream has a max age;
// without one, or with no such checkpoint, verify fails. The auditor goes
// on while the start stays within what it covered, and stops once it
// moves past.
func TestHeadTruncation(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true, Audit: onDemand})
	stop := e.Serve("")
	cp := &audit.Checkpointer{NC: e.NC, Stream: consumers.DefaultStream, Domain: e.Domain, Key: e.Runtime.AuditorKey, Bundle: e.Runtime.Bundle}
	checkpoint := func() *audit.Made {
		t.Helper()
		made, err := cp.Checkpoint(t.Context())
		require.NoError(t, err)
		require.True(t, made.New)
		return made
	}
	grants(t, e, 2)
	c1 := checkpoint()
	grants(t, e, 2)
	c2 := checkpoint()
	grants(t, e, 1)
	stop()
	last := streamState(t, e).LastSeq
	require.Greater(t, last, c2.Seq)
	keep := func(n uint64) {
		t.Helper()
		editStream(t, e, func(c *jetstream.StreamConfig) { c.MaxMsgs, c.Discard = int64(n), jetstream.DiscardOld })
	}

	// 1. The start moves past the first checkpoint, not the second, which
	// covers it; but the stream keeps every message: an error. The tree
	// goes on from the second checkpoint, so the one the auditor makes
	// now is matched.
	keep(last - c1.Seq)
	first := streamState(t, e).FirstSeq
	require.Equal(t, c1.Seq+1, first)
	rep := verifyLive(t, e, audit.Options{})
	require.Equal(t, []string{audit.CheckTruncation}, checksOf(errorsOf(rep)), "histories begun before the start are not broken chains")
	assert.Contains(t, errorsOf(rep)[0].Problem, "keeps every message")
	assert.Equal(t, last, rep.TreeSize, "the tree, from the second checkpoint on, covers the stream from its first message")
	c3 := checkpoint()
	assert.Equal(t, c2.Checkpoint.TreeSize+(c3.Seq-c2.Seq), c3.Checkpoint.TreeSize, "the auditor went on: the start is within what it covered")
	rep = verifyLive(t, e, audit.Options{})
	assert.EqualValues(t, 1, rep.Checkpoints, "the third checkpoint, checked against the tree from the second")
	assert.Equal(t, []string{audit.CheckTruncation}, checksOf(errorsOf(rep)))

	// 2. With a max age, the stream may drop its oldest messages: the
	// same start, accounted for by the second checkpoint, is a warning.
	editStream(t, e, func(c *jetstream.StreamConfig) { c.MaxAge, c.Duplicates = time.Hour, time.Minute })
	first = streamState(t, e).FirstSeq // the third checkpoint pushed one more out
	rep = verifyLive(t, e, audit.Options{})
	assert.True(t, rep.OK())
	assert.EqualValues(t, 1, rep.Checkpoints)
	assert.True(t, slices.ContainsFunc(rep.Findings, func(f audit.Finding) bool {
		return f.Check == audit.CheckTruncation && f.Severity == audit.SeverityWarning && f.Seq == first
	}), "the start, accounted for")

	// 3. Two requests later, only the last message is kept: no checkpoint
	// is left to account for the start. Verify fails, and the auditor,
	// whose last checkpoint is gone, signs nothing.
	for range 2 {
		_, err := e.Client.Request(t.Context(), e.Identity("deploy-bot"), client.Spec{Domain: e.Domain, Action: "deploy", Resource: "staging/web"})
		require.NoError(t, err)
	}
	keep(1)
	rep = verifyLive(t, e, audit.Options{})
	assert.EqualValues(t, 1, rep.Messages)
	require.Equal(t, []string{audit.CheckTruncation}, checksOf(errorsOf(rep)))
	assert.Contains(t, errorsOf(rep)[0].Problem, "no checkpoint left")
	_, err := cp.Checkpoint(t.Context())
	require.ErrorIs(t, err, audit.ErrTrailCut)
	fresh := &audit.Checkpointer{NC: e.NC, Stream: consumers.DefaultStream, Domain: e.Domain, Key: e.Runtime.AuditorKey, Bundle: e.Runtime.Bundle}
	_, err = fresh.Checkpoint(t.Context())
	require.ErrorIs(t, err, audit.ErrTrailCut, "an auditor starting afresh does not begin a tree at the moved start either")
	assert.Equal(t, uint64(1), streamState(t, e).Msgs, "no checkpoint was appended")
}

// The auditor never extends its tree over a message removed after its
// last checkpoint: max messages per subject with discard old drops an
// earlier message on the same subject (the deleted vote).
func TestAuditorStopsAtAGap(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true, Audit: onDemand})
	stop := e.Serve("")
	cp := &audit.Checkpointer{NC: e.NC, Stream: consumers.DefaultStream, Domain: e.Domain, Key: e.Runtime.AuditorKey, Bundle: e.Runtime.Bundle}
	grants(t, e, 1)
	stop()
	_, err := cp.Checkpoint(t.Context())
	require.NoError(t, err)
	// Two messages on one subject: the limit pushes the first out.
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	subject := events.Subject(e.Domain, "0196a6b0-0000-7000-8000-000000000001", events.KindAlerted)
	for _, body := range []string{"one", "two"} {
		_, err := js.Publish(t.Context(), subject, []byte(body))
		require.NoError(t, err)
	}
	editStream(t, e, func(c *jetstream.StreamConfig) { c.MaxMsgsPerSubject, c.Discard = 1, jetstream.DiscardOld })
	_, err = cp.Checkpoint(t.Context())
	require.ErrorIs(t, err, audit.ErrTrailCut)
	rep := verifyLive(t, e, audit.Options{})
	assert.Contains(t, checksOf(errorsOf(rep)), audit.CheckOrder, "the gap")
}

// Junk, and a decision signed by a key not entitled to it, published to a
// granted request's decision subjects: the auditor refuses each on the
// record, and verify reports them as refused input — a warning, not the
// trail changed — with --since too. An unanswered one stays an error.
func TestJunkOnADecisionSubject(t *testing.T) {
	e := writtest.Start(t, writtest.Options{Audit: onDemand})
	id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	got := e.Settle(id)
	require.Equal(t, request.StatusGranted, got.State.Status)

	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	publish := func(m *nats.Msg) uint64 {
		t.Helper()
		ack, err := js.PublishMsg(t.Context(), m)
		require.NoError(t, err)
		return ack.Sequence
	}
	junk := publish(&nats.Msg{Subject: events.Subject(e.Domain, id, events.KindGranted), Data: []byte(`{"junk":true}`)})
	forger, err := nkeys.CreateServer()
	require.NoError(t, err)
	out, err := events.Seal(events.Draft{Domain: e.Domain, RequestID: id, Kind: events.KindRevoked, Source: "writ://acme/approval",
		Time: time.Now(), Data: &events.Revoked{Prev: got.State.LastDigest, By: events.PrincipalRef{Domain: "acme", Name: "alice"}, Reason: "forged"}}, forger)
	require.NoError(t, err)
	forged := publish(&nats.Msg{Subject: out.Subject, Data: out.Body, Header: nats.Header(out.Header())})

	r := e.Await(id, 10*time.Second, func(s request.State) bool { return s.Answered[junk] != "" && s.Answered[forged] != "" })
	assert.Equal(t, request.StatusGranted, r.State.Status, "nothing changed")
	auditor, err := e.Runtime.AuditorKey.PublicKey()
	require.NoError(t, err)
	for _, rec := range r.Records {
		if rec.Kind == events.KindRefused {
			assert.Equal(t, auditor, rec.Signer, "the auditor answered")
		}
	}

	refused := func(rep *audit.Report) []uint64 {
		var seqs []uint64
		for _, f := range rep.Findings {
			if f.Check == audit.CheckRefused && f.Severity == audit.SeverityWarning {
				seqs = append(seqs, f.Seq)
			}
		}
		return seqs
	}
	rep := verifyLive(t, e, audit.Options{})
	assert.True(t, rep.OK(), "noise, not tampering")
	assert.ElementsMatch(t, []uint64{junk, forged}, refused(rep))
	rep = verifyLive(t, e, audit.Options{Since: time.Now().Add(time.Hour)})
	assert.True(t, rep.OK(), "with --since too")
	assert.Zero(t, rep.Requests)
	assert.ElementsMatch(t, []uint64{junk, forged}, refused(rep))

	// The same trail without the refusals (a copy): the forged revocation
	// is an error again, as a genuine event altered would be.
	msgs := copyStream(t, e.NC)
	msgs = slices.DeleteFunc(msgs, func(m events.Message) bool {
		_, _, k, err := events.ParseSubject(m.Subject)
		return err == nil && k == events.KindRefused
	})
	rep = verify(msgs, audit.Options{Bundle: e.Runtime.Bundle, Stream: "WRIT"})
	logFindings(t, rep)
	assert.True(t, slices.ContainsFunc(errorsOf(rep), func(f audit.Finding) bool { return f.Check == audit.CheckSignature && f.Seq == forged }))
	assert.True(t, slices.ContainsFunc(errorsOf(rep), func(f audit.Finding) bool { return f.Check == audit.CheckSignature && f.Seq == junk }))
}

// Verifying another domain's stream across leafnodes reads its state
// there too (STREAM.INFO through its JetStream domain), both ways.
func TestVerifyAcrossLeafnodes(t *testing.T) {
	envs := writtest.Federation(t, map[string]writtest.Options{"hub": {Audit: onDemand}, "spoke": {Audit: onDemand}}, "hub", "spoke")
	hub, spoke := envs["hub"], envs["spoke"]
	hub.Settle(hub.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"}))
	spoke.Settle(spoke.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"}))
	for _, c := range []struct {
		name, of string
		from     *writtest.Env
	}{
		{"the spoke verifies the hub", "hub", spoke}, {"the hub verifies the spoke", "spoke", hub},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep, err := audit.VerifyStream(t.Context(), c.from.Client.Reader(c.of), audit.Options{Bundle: c.from.Runtime.Bundle}, nil)
			require.NoError(t, err)
			logFindings(t, rep)
			assert.True(t, rep.OK())
			require.NotNil(t, rep.Stream)
			assert.Equal(t, rep.LastSeq, rep.Stream.LastSeq)
		})
	}
}
