package dboperator_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/examples/target-service/dboperator"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/redeem"
	"github.com/writ-dev/writ/request"
)

// fixture is a running Writ installation for domain acme with the
// db-operator serving it.
type fixture struct {
	e  *writtest.Env
	op *dboperator.Operator
}

func start(t *testing.T) *fixture {
	t.Helper()
	e := writtest.Start(t, writtest.Options{})
	r, err := redeem.New(redeem.Config{
		NC: e.NC, Domain: writtest.Domain, Bundle: e.Runtime.Bundle, Key: e.Runtime.RedeemerKey,
		Service: dboperator.DefaultName, Logger: e.Logger,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	require.NoError(t, r.WaitReady(wctx))

	op, err := dboperator.New(dboperator.Config{NC: e.NC, Redeemer: r, Logger: e.Logger})
	require.NoError(t, err)
	require.NoError(t, op.Start(ctx))
	t.Cleanup(func() {
		assert.NoError(t, op.Stop())
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("the redeemer did not stop")
		}
	})
	return &fixture{e: e, op: op}
}

// grant has the pipeline settle a request as who and opens its grant.
func (f *fixture) grant(t *testing.T, who string, spec client.Spec) (string, string) {
	t.Helper()
	id := f.e.Request(who, spec)
	r := f.e.Settle(id)
	require.Equal(t, request.StatusGranted, r.State.Status, "request %s", id)
	token, err := client.OpenGrant(r.State, f.e.Identity(who))
	require.NoError(t, err)
	return id, token
}

func (f *fixture) command(t *testing.T, who, token, action, resource string, params map[string]string) dboperator.Command {
	t.Helper()
	cmd, err := dboperator.NewCommand(f.e.Identity(who).Key, token, action, resource, params, time.Now())
	require.NoError(t, err)
	return cmd
}

func (f *fixture) call(t *testing.T, action string, cmd dboperator.Command) (dboperator.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	return dboperator.Call(ctx, f.e.NC, dboperator.DefaultName, action, cmd)
}

// requireRefused checks that err is a refusal with code.
func requireRefused(t *testing.T, err error, code string) *dboperator.Refusal {
	t.Helper()
	require.Error(t, err)
	var r *dboperator.Refusal
	require.ErrorAs(t, err, &r)
	assert.Equal(t, code, r.Code, r.Message)
	assert.NotEmpty(t, r.Message)
	return r
}

// redemptions returns the redeemed events (redeemed or refused) of a request.
func (f *fixture) redemptions(t *testing.T, id string) (request.State, []*events.Redeemed) {
	t.Helper()
	r, err := f.e.Client.Load(t.Context(), writtest.Domain, id)
	require.NoError(t, err)
	var out []*events.Redeemed
	for _, rec := range r.Records {
		if rec.Kind == events.KindRedeemed {
			require.NoError(t, rec.Err)
			out = append(out, rec.Data.(*events.Redeemed))
		}
	}
	return r.State, out
}

var migration = map[string]string{"migration": "0042_add_index"}

func TestDeployOnceAfterRedemption(t *testing.T) {
	f := start(t)
	id, token := f.grant(t, "deploy-bot", client.Spec{Action: "deploy", Resource: "staging/orders", Params: migration, TTL: 5 * time.Minute})
	assert.Empty(t, f.op.Performed(), "nothing happens on a grant alone")

	res, err := f.call(t, "deploy", f.command(t, "deploy-bot", token, "deploy", "staging/orders", migration))
	require.NoError(t, err)
	assert.Equal(t, dboperator.Result{RequestID: id, Action: "deploy", Resource: "staging/orders", Done: "applied migrations to staging/orders"}, res)
	done := f.op.Performed()
	require.Len(t, done, 1)
	assert.Equal(t, "deploy", done[0].Action)
	assert.Equal(t, "staging/orders", done[0].Resource)
	assert.Equal(t, migration, done[0].Params)
	assert.Equal(t, id, done[0].RequestID)
	holder, _ := f.e.Identity("deploy-bot").Key.PublicKey()
	assert.Equal(t, holder, done[0].Holder)

	st, rs := f.redemptions(t, id)
	assert.Equal(t, request.StatusRedeemed, st.Status)
	require.Len(t, rs, 1)
	assert.Equal(t, events.RedemptionRedeemed, rs[0].Outcome)
	assert.Equal(t, dboperator.DefaultName, rs[0].Service)

	// The same grant again, with a fresh proof: used up.
	_, err = f.call(t, "deploy", f.command(t, "deploy-bot", token, "deploy", "staging/orders", migration))
	r := requireRefused(t, err, "already-used")
	assert.NotContains(t, r.Message, token)
	assert.Len(t, f.op.Performed(), 1, "performed once")
	_, rs = f.redemptions(t, id)
	require.Len(t, rs, 2)
	assert.Equal(t, "already-used", rs[1].Code)
}

func TestRefusalsPerformNothing(t *testing.T) {
	f := start(t)
	id, token := f.grant(t, "deploy-bot", client.Spec{Action: "deploy", Resource: "staging/orders", Params: migration, TTL: 5 * time.Minute})
	good := func() dboperator.Command {
		return f.command(t, "deploy-bot", token, "deploy", "staging/orders", migration)
	}

	// A token of the same claims signed by an issuer key acme does not trust.
	rogueKey, err := nkeys.CreateServer()
	require.NoError(t, err)
	rogueX, err := nkeys.CreateCurveKeys()
	require.NoError(t, err)
	rogue, err := issuer.New(rogueKey, rogueX)
	require.NoError(t, err)
	holder, _ := f.e.Identity("deploy-bot").Key.PublicKey()
	forged, _, err := rogue.Mint(issuer.Constraints{
		RequestID: id, Holder: holder, Audience: writtest.Domain, Action: "deploy", Resource: "staging/orders",
		ParamsDigest: issuer.ParamsDigest(migration), NotBefore: time.Now().Add(-time.Second), TTL: 5 * time.Minute,
	})
	require.NoError(t, err)
	// The real token with its claims edited to a production database.
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	edited := strings.Replace(string(payload), `"staging/orders"`, `"prod/orders"`, 1)
	require.NotEqual(t, string(payload), edited)
	altered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(edited)) + "." + parts[2]

	tests := []struct {
		name     string
		action   string
		cmd      func() dboperator.Command
		raw      []byte // sent as is instead of cmd
		code     string
		recorded bool // the redeemer records the refusal in the request's history
	}{
		{name: "not JSON", action: "deploy", raw: []byte("deploy staging/orders please"), code: dboperator.CodeBadRequest},
		{name: "without proof", action: "deploy", code: "malformed-proof", cmd: func() dboperator.Command {
			c := good()
			c.Proof = ""
			return c
		}},
		{name: "proof by another key", action: "deploy", code: "wrong-holder", recorded: true, cmd: func() dboperator.Command {
			return f.command(t, "carol", token, "deploy", "staging/orders", migration)
		}},
		{name: "proof made for another resource", action: "deploy", code: "bad-proof", recorded: true, cmd: func() dboperator.Command {
			c := good()
			c.Proof = f.command(t, "deploy-bot", token, "deploy", "staging/billing", migration).Proof
			return c
		}},
		{name: "another resource", action: "deploy", code: "wrong-resource", recorded: true, cmd: func() dboperator.Command {
			return f.command(t, "deploy-bot", token, "deploy", "staging/billing", migration)
		}},
		{name: "other parameters", action: "deploy", code: "wrong-params", recorded: true, cmd: func() dboperator.Command {
			return f.command(t, "deploy-bot", token, "deploy", "staging/orders", map[string]string{"migration": "0043_drop_table"})
		}},
		{name: "another action", action: "restart", code: "wrong-action", recorded: true, cmd: func() dboperator.Command {
			return f.command(t, "deploy-bot", token, "restart", "prod/orders", migration)
		}},
		{name: "outside the action's scope", action: "deploy", code: dboperator.CodeOutOfScope, cmd: func() dboperator.Command {
			return f.command(t, "deploy-bot", token, "deploy", "prod/orders", migration)
		}},
		{name: "scope with no name", action: "deploy", code: dboperator.CodeOutOfScope, cmd: func() dboperator.Command {
			return f.command(t, "deploy-bot", token, "deploy", "staging/", migration)
		}},
		{name: "forged: signed by an untrusted key", action: "deploy", code: "untrusted-issuer", cmd: func() dboperator.Command {
			return f.command(t, "deploy-bot", forged, "deploy", "staging/orders", migration)
		}},
		{name: "forged: claims altered after signing", action: "restart", code: "malformed", cmd: func() dboperator.Command {
			return f.command(t, "deploy-bot", altered, "restart", "prod/orders", migration)
		}},
		{name: "no grant at all", action: "deploy", code: "malformed", cmd: func() dboperator.Command {
			return f.command(t, "deploy-bot", "", "deploy", "staging/orders", migration)
		}},
	}
	recorded := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.raw != nil {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				var msg []byte
				m, rerr := f.e.NC.RequestWithContext(ctx, dboperator.Subject(dboperator.DefaultName, tt.action), tt.raw)
				require.NoError(t, rerr)
				msg = m.Data
				var r dboperator.Refusal
				require.NoError(t, json.Unmarshal(msg, &r))
				assert.Equal(t, tt.code, m.Header.Get("Nats-Service-Error-Code"))
				err = &r
			} else {
				_, err = f.call(t, tt.action, tt.cmd())
			}
			requireRefused(t, err, tt.code)
			assert.Empty(t, f.op.Performed(), "a refusal performs nothing")
			if tt.recorded {
				recorded++
			}
			st, rs := f.redemptions(t, id)
			assert.Equal(t, request.StatusGranted, st.Status, "the grant is not consumed")
			require.Len(t, rs, recorded, "refusals recorded in the audit stream")
			if tt.recorded {
				assert.Equal(t, events.RedemptionRefused, rs[len(rs)-1].Outcome)
				assert.Equal(t, tt.code, rs[len(rs)-1].Code)
			}
		})
	}

	// None of that spent the grant: the genuine call still works, once.
	_, err = f.call(t, "deploy", good())
	require.NoError(t, err)
	assert.Len(t, f.op.Performed(), 1)
}

func TestRestartAfterTwoApprovals(t *testing.T) {
	f := start(t)
	id := f.e.Request("carol", client.Spec{Action: "restart", Resource: "prod/orders", Reason: "replication stuck", TTL: 10 * time.Minute})
	f.e.Pending(id)
	f.e.Vote("alice", id, true, "runbook checked")
	r, err := f.e.Client.Load(t.Context(), writtest.Domain, id)
	require.NoError(t, err)
	assert.True(t, r.State.Status.IsPending(), "one approver is not enough: %s", r.State.Status)
	f.e.Vote("bob", id, true, "agreed")

	r = f.e.Settle(id)
	require.Equal(t, request.StatusGranted, r.State.Status)
	token, err := client.OpenGrant(r.State, f.e.Identity("carol"))
	require.NoError(t, err)

	// Only carol holds it: an approver cannot use it.
	_, err = f.call(t, "restart", f.command(t, "alice", token, "restart", "prod/orders", nil))
	requireRefused(t, err, "wrong-holder")
	assert.Empty(t, f.op.Performed())

	res, err := f.call(t, "restart", f.command(t, "carol", token, "restart", "prod/orders", nil))
	require.NoError(t, err)
	assert.Equal(t, id, res.RequestID)
	assert.Equal(t, "restarted prod/orders", res.Done)
	require.Len(t, f.op.Performed(), 1)

	_, err = f.call(t, "restart", f.command(t, "carol", token, "restart", "prod/orders", nil))
	requireRefused(t, err, "already-used")
	assert.Len(t, f.op.Performed(), 1)
}

func TestConcurrentCallsOneGrantOneAction(t *testing.T) {
	f := start(t)
	_, token := f.grant(t, "deploy-bot", client.Spec{Action: "deploy", Resource: "staging/orders", TTL: 5 * time.Minute})
	const n = 8
	cmds := make([]dboperator.Command, n)
	for i := range cmds {
		cmds[i] = f.command(t, "deploy-bot", token, "deploy", "staging/orders", nil)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = f.call(t, "deploy", cmds[i]) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
			continue
		}
		requireRefused(t, err, "already-used")
	}
	assert.Equal(t, 1, ok, "exactly one call wins")
	assert.Len(t, f.op.Performed(), 1)
}

func TestNewRefuses(t *testing.T) {
	_, err := dboperator.New(dboperator.Config{Name: "db operator"})
	require.ErrorIs(t, err, dboperator.ErrInvalidConfig)
	for _, want := range []string{"no NATS connection", "no redeemer", "service name"} {
		assert.Contains(t, err.Error(), want)
	}
}
