package consumers_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/redeem"
	"github.com/writ-dev/writ/request"
)

// betaPolicies let alpha's and gamma's bots deploy to beta's staging.
const betaPolicies = `
@id("partner-bots-deploy-staging")
@max_ttl("10m")
permit (principal, action == Action::"deploy", resource)
when { (principal in Group::"alpha/bots" || principal in Group::"gamma/bots") && resource.path like "staging/*" };
`

// awaitIn follows a request of another domain from e's NATS.
func awaitIn(t *testing.T, e *writtest.Env, domain, id string) *client.Request {
	t.Helper()
	ctx, cancel := contextWithTimeout(t, 20*time.Second)
	defer cancel()
	r, err := e.Client.Wait(ctx, domain, id, client.Settled)
	require.NoError(t, err)
	return r
}

// A requester on alpha's NATS asks beta; beta's policy decides, beta's
// stream holds the record, and the requester gets the grant on alpha.
func TestCrossDomainRequest(t *testing.T) {
	envs := writtest.Federation(t, map[string]writtest.Options{"beta": {Policies: betaPolicies}}, "beta", "alpha")
	alpha, beta := envs["alpha"], envs["beta"]
	bot := alpha.Identity("deploy-bot")

	var id string
	require.Eventually(t, func() bool { // interest crosses the leafnode first
		var err error
		id, err = alpha.Client.Request(t.Context(), bot, client.Spec{Domain: "beta", Action: "deploy", Resource: "staging/web"})
		return err == nil
	}, 10*time.Second, 100*time.Millisecond)
	r := awaitIn(t, alpha, "beta", id)
	require.Equal(t, request.StatusGranted, r.State.Status, "%v", writtest.Kinds(r))
	assert.Equal(t, []string{"partner-bots-deploy-staging"}, r.State.Evaluation.Reasons)
	assert.Equal(t, "alpha", r.State.Requester.Domain)

	// The record lives in beta's stream, not alpha's.
	_, err := beta.Client.Load(t.Context(), "beta", id)
	require.NoError(t, err)
	_, err = alpha.Client.Find(t.Context(), id)
	assert.ErrorIs(t, err, client.ErrNotFound)

	token, err := client.OpenGrant(r.State, bot)
	require.NoError(t, err)
	claims, err := issuer.Verify(token, issuer.VerifyOptions{Bundle: beta.Runtime.Bundle, Audience: "beta", Action: "deploy", Resource: "staging/web", Holder: bot.Principal.Key})
	require.NoError(t, err)
	assert.Equal(t, "beta", claims.Audience)

	// Redeemed at beta, by beta's service, with the holder's proof.
	rd, err := redeem.New(redeem.Config{NC: beta.NC, Domain: "beta", Bundle: beta.Runtime.Bundle, Key: beta.Runtime.RedeemerKey, Service: "deployer"})
	require.NoError(t, err)
	go func() { _ = rd.Run(t.Context()) }()
	require.NoError(t, rd.WaitReady(t.Context()))
	want := redeem.Want{Action: "deploy", Resource: "staging/web"}
	proof, err := redeem.Prove(bot.Key, token, want, time.Now())
	require.NoError(t, err)
	_, err = rd.Redeem(t.Context(), token, proof, want)
	require.NoError(t, err)
	r = awaitIn(t, alpha, "beta", id)
	assert.Equal(t, request.StatusRedeemed, r.State.Status, "the requester sees its grant used")

	// alpha's own policies do not apply in beta: the same bot asking alpha
	// itself to deploy to alpha's staging is decided by alpha.
	local := alpha.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	assert.Equal(t, []string{"bots-deploy-staging"}, alpha.Settle(local).State.Evaluation.Reasons)
}

// Three domains: beta's grant is no good in gamma, and an identity that
// claims alpha but is signed by gamma's account key is refused by beta.
func TestThreeDomains(t *testing.T) {
	envs := writtest.Federation(t, map[string]writtest.Options{"beta": {Policies: betaPolicies}}, "beta", "alpha", "gamma")
	alpha, beta, gamma := envs["alpha"], envs["beta"], envs["gamma"]

	// gamma's bot, through the hub, gets a beta grant.
	bot := gamma.Identity("deploy-bot")
	var id string
	require.Eventually(t, func() bool {
		var err error
		id, err = gamma.Client.Request(t.Context(), bot, client.Spec{Domain: "beta", Action: "deploy", Resource: "staging/api"})
		return err == nil
	}, 10*time.Second, 100*time.Millisecond)
	r := awaitIn(t, gamma, "beta", id)
	require.Equal(t, request.StatusGranted, r.State.Status)
	token, err := client.OpenGrant(r.State, bot)
	require.NoError(t, err)

	// Presented to gamma, beta's grant is refused.
	_, err = issuer.Verify(token, issuer.VerifyOptions{Bundle: gamma.Runtime.Bundle, Audience: "gamma", Action: "deploy", Resource: "staging/api"})
	assert.ErrorIs(t, err, issuer.ErrWrongAudience)

	// An identity claiming alpha, signed with gamma's account key.
	gammaAccount, err := identity.LoadSeed(filepath.Join(gamma.Dir, "keys", "account.nk"))
	require.NoError(t, err)
	creds, err := identity.IssueUser(gammaAccount, identity.UserSpec{Domain: "alpha", Name: "deploy-bot", Groups: []string{"bots"}})
	require.NoError(t, err)
	impostor, err := identity.ParseCreds(creds)
	require.NoError(t, err)
	id, err = alpha.Client.Request(t.Context(), impostor, client.Spec{Domain: "beta", Action: "deploy", Resource: "staging/api"})
	require.NoError(t, err)
	r = awaitIn(t, alpha, "beta", id)
	require.Equal(t, request.StatusRejected, r.State.Status)
	assert.Equal(t, "untrusted-key", r.State.Rejection.Code)
	_, err = beta.Client.Load(t.Context(), "beta", id)
	require.NoError(t, err, "the rejection is on beta's record")
	assert.Equal(t, events.KindRejected, r.Records[len(r.Records)-1].Kind)
}

func contextWithTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}

// BenchmarkCrossDomainAutoApprove is BenchmarkAutoApprove with the
// requester on alpha's NATS and the pipeline in beta, across a leafnode.
func BenchmarkCrossDomainAutoApprove(b *testing.B) {
	envs := writtest.Federation(b, map[string]writtest.Options{"beta": {Policies: betaPolicies}}, "beta", "alpha")
	alpha := envs["alpha"]
	bot := alpha.Identity("deploy-bot")
	spec := client.Spec{Domain: "beta", Action: "deploy", Resource: "staging/web"}
	require.Eventually(b, func() bool {
		_, err := alpha.Client.Request(b.Context(), bot, spec)
		return err == nil
	}, 10*time.Second, 100*time.Millisecond)
	b.ResetTimer()
	for b.Loop() {
		id, err := alpha.Client.Request(b.Context(), bot, spec)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
		r, err := alpha.Client.Wait(ctx, "beta", id, client.Settled)
		cancel()
		if err != nil || r.State.Status != request.StatusGranted {
			b.Fatalf("request %s: %v", id, err)
		}
	}
}
