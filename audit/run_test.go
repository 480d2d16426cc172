package audit_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/redeem"
	"github.com/writ-dev/writ/request"
)

// run is a real pipeline's trail: every kind of outcome, refused input,
// junk, a redemption and a revocation, with checkpoints in between.
type run struct {
	env  *writtest.Env
	msgs []events.Message
	ids  map[string]string // what each request is, by name
}

var (
	runOnce sync.Once
	shared  *run
)

// sharedRun makes one run for the tests that only read it.
func sharedRun(t *testing.T) *run {
	runOnce.Do(func() { shared = newRun(t) })
	if shared == nil {
		t.Fatal("the shared run failed")
	}
	return shared
}

func newRun(t testing.TB) *run {
	e := writtest.Start(t, writtest.Options{})
	r := &run{env: e, ids: map[string]string{}}
	ctx := context.Background()

	r.ids["auto"] = e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web", Params: map[string]string{"version": "2"}})
	r.ids["denied-by-policy"] = e.Request("carol", client.Spec{Action: "drop-database", Resource: "prod/orders"})
	r.ids["two"] = e.Request("carol", client.Spec{Action: "restart", Resource: "prod/api", Reason: "stuck"})
	r.ids["denied"] = e.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	r.ids["revoked"] = e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/api"})
	for _, n := range []string{"auto", "denied-by-policy", "revoked"} {
		e.Settle(r.ids[n])
	}
	e.Pending(r.ids["two"])
	e.Pending(r.ids["denied"])
	r.checkpoint(t)

	// Refused input: a vote by the requester, an unsigned message, junk
	// outside any request.
	e.Vote("alice", r.ids["two"], true, "")
	_, err := e.Client.Vote(ctx, e.Identity("carol"), e.Domain, r.ids["two"], client.Vote{Approve: true})
	require.NoError(t, err, "a self-approval reaches the stream; the pipeline refuses it")
	require.NoError(t, e.NC.Publish(events.Subject(e.Domain, r.ids["two"], events.KindVoted), []byte(`{"not":"signed"}`)))
	require.NoError(t, e.NC.Publish("writ.acme.not-a-request.voted", []byte("junk")))
	e.Vote("bob", r.ids["two"], true, "")
	e.Vote("bob", r.ids["denied"], false, "not now")
	e.Settle(r.ids["two"])
	e.Settle(r.ids["denied"])

	// Use one grant, revoke another.
	rd, err := redeem.New(redeem.Config{NC: e.NC, Domain: e.Domain, Bundle: e.Runtime.Bundle, Key: e.Runtime.RedeemerKey, Service: "deployer", Logger: e.Logger})
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rd.Run(rctx) }()
	require.NoError(t, rd.WaitReady(ctx))
	bot := e.Identity("deploy-bot")
	holder, _ := bot.Key.PublicKey()
	st, err := e.Client.Load(ctx, e.Domain, r.ids["auto"])
	require.NoError(t, err)
	token, err := client.OpenGrant(st.State, bot)
	require.NoError(t, err)
	_, err = rd.RedeemAsHolder(ctx, token, holder, nil)
	require.NoError(t, err)
	_, err = rd.RedeemAsHolder(ctx, token, holder, nil)
	require.ErrorIs(t, err, redeem.ErrAlreadyUsed, "the refusal is recorded too")
	cancel()
	require.NoError(t, <-done)
	_, err = e.Client.Revoke(ctx, e.Identity("alice"), e.Domain, r.ids["revoked"], "wrong build")
	require.NoError(t, err)
	e.Await(r.ids["revoked"], 20*time.Second, func(s request.State) bool { return s.Status == request.StatusRevoked })
	e.Await(r.ids["auto"], 20*time.Second, func(s request.State) bool { return s.Status == request.StatusRedeemed })
	// Let the pipeline answer what it still holds, then pin it all.
	waitQuiet(t, e)
	r.checkpoint(t)
	r.msgs = copyStream(t, e.NC)
	return r
}

// checkpoint asks the running auditor for a checkpoint.
func (r *run) checkpoint(t testing.TB) audit.Made {
	t.Helper()
	m, err := r.env.NC.Request(audit.CheckpointSubject(r.env.Domain), nil, 10*time.Second)
	require.NoError(t, err)
	var made audit.Made
	require.NoError(t, json.Unmarshal(m.Data, &made), string(m.Data))
	require.True(t, made.New, string(m.Data))
	return made
}

// waitQuiet waits until the stream has not grown for a while.
func waitQuiet(t testing.TB, e *writtest.Env) {
	t.Helper()
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	var last uint64
	for i := 0; i < 100; i++ {
		s, err := js.Stream(context.Background(), "WRIT")
		require.NoError(t, err)
		info, err := s.Info(context.Background())
		require.NoError(t, err)
		if info.State.LastSeq == last && i > 3 {
			return
		}
		last = info.State.LastSeq
		time.Sleep(100 * time.Millisecond)
	}
}

// copyStream reads every message of the audit stream.
func copyStream(t testing.TB, nc *nats.Conn) []events.Message {
	t.Helper()
	var out []events.Message
	require.NoError(t, store.Reader{NC: nc, Stream: "WRIT"}.ScanAll(context.Background(), 1, func(m events.Message) error {
		out = append(out, m)
		return nil
	}))
	return out
}

func verify(msgs []events.Message, o audit.Options) *audit.Report {
	v := audit.NewVerifier(o)
	for _, m := range msgs {
		v.Add(m)
	}
	return v.Finish()
}
