package embedded_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/access"
	"github.com/writ-dev/writ/internal/embedded"
	"github.com/writ-dev/writ/internal/writtest"
)

const (
	hub   = "beta"
	spoke = "alpha"
	id    = "0195a7a0-0000-7000-8000-000000000001"
	// barrier is a subject of the spoke's domain that crosses to the hub
	// and no stream holds (a stream holds writ.<domain>.<id>.<kind>): a
	// publish on it that arrives comes after those sent before it on the
	// same link.
	barrier = "writ.alpha.leafauth-barrier"
)

// federation is a hub (beta) and a spoke (alpha) as writ serve runs them,
// servers only: the spoke links with the leaf creds the hub issued.
func federation(t *testing.T) (hubEnv, spokeEnv *writtest.Env) {
	t.Helper()
	envs := writtest.Federation(t, map[string]writtest.Options{hub: {NoServe: true}, spoke: {NoServe: true}}, hub, spoke)
	return envs[hub], envs[spoke]
}

func stored(t *testing.T, e *writtest.Env, subject string) int {
	t.Helper()
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	s, err := js.Stream(t.Context(), "WRIT")
	require.NoError(t, err)
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(subject))
	require.NoError(t, err)
	count := 0
	for _, c := range info.State.Subjects {
		count += int(c)
	}
	return count
}

// A hub and a spoke, each its own JetStream domain: requests cross into
// the other domain's stream, reads reach it by its domain's API prefix,
// events reach whoever waits for them, and the spoke never forwards
// timers or another domain's component events.
func TestLeafnodeFederation(t *testing.T) {
	beta, alpha := federation(t)

	// The spoke's request reaches the hub's stream (once the link is up).
	var ack *jetstream.PubAck
	ajs, err := jetstream.New(alpha.NC)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ack, err = ajs.Publish(t.Context(), "writ.beta."+id+".requested", []byte(`{"n":1}`), jetstream.WithExpectStream("WRIT"))
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	assert.Equal(t, hub, ack.Domain)
	assert.Equal(t, 1, stored(t, beta, "writ.beta."+id+".requested"))
	assert.Equal(t, 0, stored(t, alpha, "writ.beta.>"), "alpha's stream holds only alpha's subjects")

	// A direct read of beta's stream from alpha, by beta's API prefix.
	req, _ := json.Marshal(map[string]any{"seq": 1, "next_by_subj": "writ.beta." + id + ".>", "batch": 10})
	inbox := alpha.NC.NewRespInbox()
	sub, err := alpha.NC.SubscribeSync(inbox)
	require.NoError(t, err)
	require.NoError(t, alpha.NC.PublishRequest("$JS.beta.API.DIRECT.GET.WRIT", inbox, req))
	m, err := sub.NextMsg(5 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, `{"n":1}`, string(m.Data))

	// Beta's events reach a waiter on alpha.
	wait, err := alpha.NC.SubscribeSync("writ.beta." + id + ".>")
	require.NoError(t, err)
	require.NoError(t, alpha.NC.Flush())
	require.Eventually(t, func() bool { // until the waiter's interest has crossed
		require.NoError(t, beta.NC.Publish("writ.beta."+id+".probe", nil))
		_, err := wait.NextMsg(100 * time.Millisecond)
		return err == nil
	}, 5*time.Second, time.Millisecond)
	bjs, err := jetstream.New(beta.NC)
	require.NoError(t, err)
	_, err = bjs.Publish(t.Context(), "writ.beta."+id+".evaluated", []byte(`{"n":2}`))
	require.NoError(t, err)
	for {
		got, err := wait.NextMsg(5 * time.Second)
		require.NoError(t, err)
		if got.Subject != "writ.beta."+id+".probe" {
			assert.Equal(t, "writ.beta."+id+".evaluated", got.Subject)
			break
		}
	}

	// The spoke forwards no component event of another trusted domain,
	// and no timer, though its own operator may publish them there. The
	// barrier is alpha's own event, which the hub hears after them.
	heard := make(chan *nats.Msg, 64)
	// (writ.alpha.> last: once the barrier's interest has crossed, so has
	// the rest's.)
	for _, s := range []string{"writ.beta." + id + ".granted", "writ-timers.>", "writ.alpha.>"} {
		_, err := beta.NC.ChanSubscribe(s, heard)
		require.NoError(t, err)
	}
	require.NoError(t, beta.NC.Flush())
	waitKnows(t, alpha.NC, barrier)
	require.NoError(t, alpha.NC.Publish("writ.beta."+id+".granted", []byte(`{"forged":true}`)))
	require.NoError(t, alpha.NC.Publish("writ-timers.alpha.fire.x", []byte(`{}`)))
	require.NoError(t, alpha.NC.Publish(barrier, []byte("barrier")))
	assert.Empty(t, untilBarrier(t, heard, barrier), "the spoke forwarded what it never may")
	assert.Equal(t, 0, stored(t, beta, "writ.beta."+id+".granted"))
}

// Leafnode links are authenticated as any connection is: the hub's
// server refuses a spoke with no creds, with leaf creds another domain's
// account issued, and with creds it revoked, and it enforces the allow-list
// the spoke's leaf creds carry whatever the spoke's own server forwards.
// The spokes that attack are nats-servers of the attacker's own, with no
// deny lists, not the embedded server writ serve runs.
func TestLeafAuth(t *testing.T) {
	beta, alpha := federation(t)
	leafURL := "nats-leaf://" + beta.Runtime.Config.Federation.Listen
	leafCreds := filepath.Join(alpha.Dir, "leaf-"+hub+".creds")
	obs := observe(t, beta)
	require.Eventually(t, func() bool { return obs.leafs(t) == 1 }, 10*time.Second, 20*time.Millisecond, "the spoke linked")

	t.Run("a spoke cannot publish outside its allow-list", func(t *testing.T) {
		rogue := rogueSpoke(t, leafURL, leafCreds)
		require.Eventually(t, func() bool { return obs.leafs(t) == 2 }, 10*time.Second, 20*time.Millisecond, "its creds are the spoke's: it links")
		heard := make(chan *nats.Msg, 64)
		for _, s := range []string{"writ-timers.>", "writ.>"} {
			_, err := beta.NC.ChanSubscribe(s, heard)
			require.NoError(t, err)
		}
		require.NoError(t, beta.NC.Flush())
		// The barrier is the spoke's own subject, which its leaf creds
		// let it send, over the same link after the rest.
		waitKnows(t, rogue, barrier)
		forged := []string{
			"writ.beta." + id + ".approved", // the hub's own component events
			"writ.beta." + id + ".granted",
			"writ.gamma." + id + ".granted", // a third domain's
			"writ-timers.beta.fire.x",       // a deadline
		}
		for _, s := range forged {
			require.NoError(t, rogue.Publish(s, []byte(`{"forged":true}`)))
		}
		require.NoError(t, rogue.Publish(barrier, []byte("barrier")))
		assert.Empty(t, untilBarrier(t, heard, barrier), "the hub let a spoke send outside its allow-list")
		assert.Equal(t, 0, stored(t, beta, "writ.beta."+id+".approved"))
		// What the allow-list holds does cross: an ask into the hub.
		require.NoError(t, rogue.Publish("writ.beta."+id+".voted", []byte(`{"n":3}`)))
		require.Eventually(t, func() bool { return stored(t, beta, "writ.beta."+id+".voted") == 1 }, 5*time.Second, 20*time.Millisecond)
	})

	// refused starts a spoke with creds (none: "") and waits until the hub
	// refuses them (its auth error event names the user key); it checks
	// the hub holds the real spoke's link alone, and that what the spoke
	// sent in between was not delivered: the hub refuses its next attempt
	// too, so it was never linked.
	refused := func(t *testing.T, creds string) {
		t.Helper()
		// (The hub hears of a rogue of an earlier subtest gone in a moment.)
		require.Eventually(t, func() bool { return obs.leafs(t) == 1 }, 10*time.Second, 20*time.Millisecond)
		user := ""
		if creds != "" {
			user = userOf(t, creds)
		}
		errs := obs.authErrors(t)
		rogue := rogueSpoke(t, leafURL, creds)
		obs.awaitAuthError(t, errs, user)
		ask := "writ.beta." + uuid.NewString() + ".requested"
		heard, err := beta.NC.SubscribeSync(ask)
		require.NoError(t, err)
		require.NoError(t, beta.NC.Flush())
		require.NoError(t, rogue.Publish(ask, []byte(`{}`)))
		require.NoError(t, rogue.Flush())
		obs.awaitAuthError(t, errs, user) // the spoke's next attempt
		_, err = heard.NextMsg(0)
		assert.ErrorIs(t, err, nats.ErrTimeout, "a refused spoke's request was delivered")
		assert.Equal(t, 1, obs.leafs(t), "the hub holds a link it refused")
	}
	t.Run("no creds", func(t *testing.T) { refused(t, "") })
	t.Run("leaf creds of another domain's account", func(t *testing.T) {
		// gamma's setup issues leaf creds for alpha, as beta's would:
		// beta's server trusts only beta's account.
		dir := t.TempDir()
		gamma, err := config.Init(dir, "gamma")
		require.NoError(t, err)
		account, err := identity.LoadSeed(gamma.Path(config.AccountSeed))
		require.NoError(t, err)
		creds, err := gamma.IssueRole(account, config.RoleSpec{Roles: []access.Role{access.Leaf}, Name: spoke, Spoke: spoke})
		require.NoError(t, err)
		path := filepath.Join(dir, "leaf-beta.creds")
		require.NoError(t, os.WriteFile(path, creds, 0o600))
		refused(t, path)
	})
	t.Run("a principal's creds of the hub", func(t *testing.T) {
		// Its JWT allows client connections only: as a leafnode, it would
		// give whoever connects to the spoke carol's rights.
		refused(t, filepath.Join(beta.Dir, config.PrincipalCreds("carol")))
	})
	t.Run("leaf creds are no client's", func(t *testing.T) {
		_, err := nats.Connect(beta.Server.ClientURL(), nats.UserCredentials(leafCreds), nats.MaxReconnects(0), nats.Timeout(5*time.Second))
		require.ErrorIs(t, err, nats.ErrAuthorization)
	})
	// Last: it ends the spoke's link for good.
	t.Run("revoked leaf creds", func(t *testing.T) {
		require.Equal(t, 1, obs.leafs(t), "the spoke is linked")
		// What 'writ identity revoke --dir beta --creds alpha/leaf-beta.creds'
		// does, then the hub's restart, which ends the link.
		user := userOf(t, leafCreds)
		cfg, err := config.Load(beta.Dir)
		require.NoError(t, err)
		added, err := cfg.RevokeUser(user)
		require.NoError(t, err)
		require.True(t, added)
		require.NoError(t, cfg.Save(beta.Dir))
		rt, err := cfg.Open()
		require.NoError(t, err)
		beta.StopAll()
		beta.Runtime = rt
		beta.StartServer()
		obs := observe(t, beta)
		errs := obs.authErrors(t)
		// The spoke dials again, and is refused: twice, so that it was
		// not linked in between.
		obs.awaitAuthError(t, errs, user)
		obs.awaitAuthError(t, errs, user)
		assert.Equal(t, 0, obs.leafs(t), "the revoked spoke is linked")
		// Its other creds still link: the hub refuses the revoked user,
		// not the spoke's domain (re-issued creds are a new user key).
		hubCfg := beta.Runtime.Config
		account, err := identity.LoadSeed(hubCfg.Path(config.AccountSeed))
		require.NoError(t, err)
		creds, err := hubCfg.IssueRole(account, config.RoleSpec{Roles: []access.Role{access.Leaf}, Name: spoke, Spoke: spoke})
		require.NoError(t, err)
		path := filepath.Join(t.TempDir(), "leaf-beta.creds")
		require.NoError(t, os.WriteFile(path, creds, 0o600))
		rogueSpoke(t, leafURL, path)
		require.Eventually(t, func() bool { return obs.leafs(t) == 1 }, 10*time.Second, 20*time.Millisecond, "re-issued creds link")
	})
}

// observer counts the hub server's leafnode links, and hears its
// authentication errors as a user of its system account.
type observer struct {
	srv    *embedded.Server
	nc     *nats.Conn
	server string // the hub server's id
}

func observe(t *testing.T, e *writtest.Env) *observer {
	t.Helper()
	sys, err := identity.LoadSeed(e.Runtime.Config.Path(config.NATSSystemSeed))
	require.NoError(t, err)
	token, user, err := identity.SignUser(sys, identity.UserSpec{Domain: e.Domain, Name: "observer"})
	require.NoError(t, err)
	seed, err := user.Seed()
	require.NoError(t, err)
	nc, err := e.Server.Connect(nats.UserJWTAndSeed(token, string(seed)))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return &observer{srv: e.Server, nc: nc, server: nc.ConnectedServerId()}
}

// leafs is how many leafnode links the hub's server holds.
func (o *observer) leafs(t *testing.T) int {
	t.Helper()
	l, err := o.srv.Leafz()
	require.NoError(t, err)
	return l.NumLeafs
}

// authErrors subscribes to the hub server's authentication errors.
func (o *observer) authErrors(t *testing.T) *nats.Subscription {
	t.Helper()
	sub, err := o.nc.SubscribeSync("$SYS.SERVER." + o.server + ".CLIENT.AUTH.ERR")
	require.NoError(t, err)
	require.NoError(t, o.nc.Flush())
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return sub
}

// awaitAuthError waits for the hub to refuse a leafnode connection of
// user ("": one that presented no user JWT).
func (o *observer) awaitAuthError(t *testing.T, sub *nats.Subscription, user string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		m, err := sub.NextMsg(time.Until(deadline))
		require.NoError(t, err, "the hub never refused the spoke")
		var ev server.DisconnectEventMsg
		require.NoError(t, json.Unmarshal(m.Data, &ev))
		got := ""
		if ev.Client.Jwt != "" {
			uc, err := jwt.DecodeUserClaims(ev.Client.Jwt)
			require.NoError(t, err)
			got = uc.Subject
		}
		if got == user {
			return
		}
	}
	t.Fatal("the hub never refused the spoke")
}

func userOf(t *testing.T, creds string) string {
	t.Helper()
	b, err := os.ReadFile(creds)
	require.NoError(t, err)
	token, err := jwt.ParseDecoratedJWT(b)
	require.NoError(t, err)
	uc, err := jwt.DecodeUserClaims(token)
	require.NoError(t, err)
	return uc.Subject
}

// rogueSpoke is a nats-server of an attacker's own linked to the hub with
// creds ("": none) and nothing else: no deny lists, no authentication of
// its own clients. It returns a client connection to it.
func rogueSpoke(t *testing.T, hubURL, creds string) *nats.Conn {
	t.Helper()
	u, err := url.Parse(hubURL)
	require.NoError(t, err)
	opts := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true}
	opts.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: []*url.URL{u}, Credentials: creds}}
	ns, err := server.NewServer(opts)
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	// Replies to the spoke's domain's inboxes are what its creds may hear.
	nc, err := nats.Connect(ns.ClientURL(), nats.CustomInboxPrefix("_INBOX."+spoke+".rogue"))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// waitKnows waits until the server nc is connected to has heard, across
// its leafnode link, of the hub's interest in subject: a publish before
// that would not cross, and its absence would prove nothing. Interest
// crosses in order, so what the hub subscribed before subject is known too.
func waitKnows(t *testing.T, nc *nats.Conn, subject string) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, err := nc.Request(subject, nil, 50*time.Millisecond)
		return !errors.Is(err, nats.ErrNoResponders)
	}, 10*time.Second, 20*time.Millisecond)
}

// untilBarrier collects what arrives on heard until the barrier does, and
// returns the subjects that came before it but waitKnows's asks.
func untilBarrier(t *testing.T, heard chan *nats.Msg, barrier string) []string {
	t.Helper()
	var got []string
	for {
		select {
		case m := <-heard:
			if m.Subject == barrier {
				if string(m.Data) == "barrier" {
					return got
				}
				continue
			}
			got = append(got, m.Subject)
		case <-time.After(10 * time.Second):
			t.Fatal("the barrier never came")
		}
	}
}
