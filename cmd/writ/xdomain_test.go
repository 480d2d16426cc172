package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsjwt "github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/identity/connect"
	"github.com/writ-dev/writ/internal/access"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/request"
)

// partnerFlows: a change to beta's production needs one of alpha's SRE
// leads, named by group in alpha's domain.
const partnerFlows = `{"flows": {"alpha-leads": {"stages": [
  {"name": "alpha-lead", "groups": ["alpha/sre-leads"], "required": 1, "deadline": "30m"}
]}}}`

func partnerPoliciesFor(d string) string { return strings.ReplaceAll(partnerPolicies, "beta/", d+"/") }

const partnerPolicies = `
@id("developers-restart-prod")
@flow("alpha-leads")
@max_ttl("30m")
permit (principal in Group::"beta/developers", action == Action::"restart", resource)
when { resource.path like "prod/*" };

@id("approvers-may-approve")
permit (principal, action == Action::"approve", resource);

@id("partner-leads-revoke")
permit (principal in Group::"alpha/sre-leads", action == Action::"revoke", resource);
`

// xdomain is two federated domains: beta's flow names alpha's SRE leads,
// whose approvers use alpha's own setup and NATS.
type xdomain struct {
	alpha, beta *writtest.Env
}

func startXDomain(t *testing.T, hub string) *xdomain {
	t.Helper()
	spoke := map[string]string{"alpha": "beta", "beta": "alpha"}[hub]
	envs := writtest.Federation(t, map[string]writtest.Options{"beta": {Flows: partnerFlows, Policies: partnerPolicies}}, hub, spoke)
	return &xdomain{alpha: envs["alpha"], beta: envs["beta"]}
}

// cmd is a command run from alpha's setup, on alpha's NATS, as alpha's name.
func (x *xdomain) cmd(name string, args ...string) []string {
	return append(args, "--dir", x.alpha.Dir, "--server", x.alpha.Server.ClientURL(),
		"--creds", filepath.Join(x.alpha.Dir, "creds", name+".creds"))
}

// pendingInBeta makes a request of beta's carol that waits for alpha's leads.
func (x *xdomain) pendingInBeta(t *testing.T) string {
	t.Helper()
	id := x.beta.Request("carol", client.Spec{Action: "restart", Resource: "prod/db", Reason: "replication stuck"})
	r := x.beta.Pending(id)
	require.Equal(t, request.StatusPending, r.State.Status, "%v", writtest.Kinds(r))
	return id
}

// An approver in alpha answers beta's request from alpha's own setup: it
// is listed, with its domain, among what waits for them, and approving it
// by id alone decides it. Both ways round: alpha a spoke of beta's hub,
// and alpha the hub.
func TestCrossDomainApprovalFromOwnSetup(t *testing.T) {
	for _, hub := range []string{"beta", "alpha"} {
		t.Run("hub "+hub, func(t *testing.T) {
			x := startXDomain(t, hub)
			id := x.pendingInBeta(t)

			// alice lists what waits for her: beta's request, in beta.
			var out string
			require.Eventually(t, func() bool {
				var err error
				out, _, err = writ(t, x.cmd("alice", "approvals", "list")...)
				return err == nil && strings.Contains(out, id)
			}, 15*time.Second, 100*time.Millisecond, "alice's list: %s", out)
			assert.Contains(t, out, "PENDING "+id+" in beta")
			assert.Contains(t, out, "beta/carol")
			out, _, err := writ(t, x.cmd("alice", "approvals", "watch", "--once")...)
			require.NoError(t, err)
			assert.Contains(t, out, "PENDING  "+id)
			assert.Contains(t, out, "on beta/prod/db")
			out, _, err = writ(t, x.cmd("alice", "approvals", "list", "--domain", "beta")...)
			require.NoError(t, err)
			assert.Contains(t, out, id, "--domain beta")

			// beta's own carol is no approver of it; alpha's carol is not
			// an SRE lead.
			out, _, err = writ(t, x.cmd("carol", "approvals", "list")...)
			require.NoError(t, err)
			assert.NotContains(t, out, id)

			// Approved by id alone, from alpha's NATS: the vote is alice's,
			// signed with her key, and beta's pipeline counts it.
			out, errOut, err := writ(t, x.cmd("alice", "approve", id)...)
			require.NoError(t, err, errOut)
			assertVoted(t, out, "approved", id, "beta")
			r := x.beta.Settle(id)
			require.Equal(t, request.StatusGranted, r.State.Status, "%v", writtest.Kinds(r))
			require.Len(t, r.State.Votes, 1)
			assert.Equal(t, "alpha/alice", r.State.Votes[0].Voter.ID())
			assert.Equal(t, x.alpha.Identity("alice").Principal.Key, r.State.Votes[0].Voter.Key)
		})
	}
}

// deny and revoke act in another domain too: with --domain, or by id.
func TestCrossDomainDenyAndRevokeWithDomain(t *testing.T) {
	x := startXDomain(t, "beta")
	id := x.pendingInBeta(t)
	_, _, err := writ(t, x.cmd("bob", "deny", id, "--domain", "alpha", "--reason", "not ours")...)
	require.ErrorIs(t, err, client.ErrNotFound, "not in alpha")
	out, errOut, err := writ(t, x.cmd("bob", "deny", id, "--domain", "beta", "--reason", "release freeze")...)
	require.NoError(t, err, errOut)
	assertVoted(t, out, "denied", id, "beta")
	r := x.beta.Settle(id)
	assert.Equal(t, request.StatusDenied, r.State.Status)

	// Revoked from alpha, by id alone, as beta's policy lets alpha's leads.
	id = x.pendingInBeta(t)
	_, _, err = writ(t, x.cmd("alice", "approve", id, "--domain", "beta")...)
	require.NoError(t, err)
	require.Equal(t, request.StatusGranted, x.beta.Settle(id).State.Status)
	out, errOut, err = writ(t, x.cmd("bob", "revoke", id, "--reason", "done with it")...)
	require.NoError(t, err, errOut)
	assert.Contains(t, out, "revoked "+id)
	r, err = x.beta.Client.Load(t.Context(), "beta", id)
	require.NoError(t, err)
	assert.Equal(t, request.StatusRevoked, r.State.Status)
}

// An id in two domains is refused as ambiguous, by approve, deny and
// revoke alike, with what to do; --domain picks one. The watch shows
// both, each in its domain, and answers DOMAIN/ID.
func TestCrossDomainAmbiguousID(t *testing.T) {
	x := startXDomain(t, "beta")
	id := x.pendingInBeta(t)
	// The same id in alpha: carol's request there (alpha's sample flow
	// asks two of its SRE leads), made with beta's id.
	requestWithID(t, x.alpha, "carol", id, client.Spec{Domain: "alpha", Action: "restart", Resource: "prod/db"})
	x.alpha.Pending(id)

	for _, args := range [][]string{{"approve", id}, {"deny", id, "--reason", "which?"}, {"revoke", id, "--reason", "which?"}} {
		_, _, err := writ(t, x.cmd("alice", args...)...)
		require.ErrorIs(t, err, client.ErrAmbiguous, args[0])
		assert.Contains(t, err.Error(), "is in 2 domains (alpha and beta)", args[0])
		assert.Contains(t, err.Error(), "--domain", args[0])
	}
	r, err := x.beta.Client.Load(t.Context(), "beta", id)
	require.NoError(t, err)
	assert.Empty(t, r.State.Votes, "nothing was cast")

	out, _, err := writ(t, x.cmd("alice", "approvals", "list")...)
	require.NoError(t, err)
	assert.Contains(t, out, "PENDING "+id+" in alpha")
	assert.Contains(t, out, "PENDING "+id+" in beta")
	m := newWatchModel(x.alpha.Identity("alice").Principal)
	for _, d := range []string{"alpha", "beta"} {
		r, err := x.alpha.Client.Load(t.Context(), d, id)
		require.NoError(t, err)
		require.NotEmpty(t, m.Update(r.State, r.Records, time.Now()))
	}
	_, err = m.Command("approve " + id[:8])
	require.ErrorIs(t, err, errCommand)
	assert.Contains(t, err.Error(), "alpha/"+id)
	a, err := m.Command("approve beta/" + id)
	require.NoError(t, err)
	assert.Equal(t, watchAction{Kind: actVote, Domain: "beta", ID: id, Digest: r.State.RequestDigest, Approve: true}, a)

	out, errOut, err := writ(t, x.cmd("alice", "approve", id, "--domain", "beta")...)
	require.NoError(t, err, errOut)
	assertVoted(t, out, "approved", id, "beta")
	assert.Equal(t, request.StatusGranted, x.beta.Settle(id).State.Status)
	r, err = x.alpha.Client.Load(t.Context(), "alpha", id)
	require.NoError(t, err)
	assert.Empty(t, r.State.Votes, "alpha's request is untouched")
}

// requestWithID makes a request as name, in e's domain, with a given id:
// ids are the requester's to choose, so another domain may hold the same.
func requestWithID(t *testing.T, e *writtest.Env, name, id string, s client.Spec) {
	t.Helper()
	who := e.Identity(name)
	xkey, err := issuer.HolderXKey(who.Key, id)
	require.NoError(t, err)
	xpub, err := xkey.PublicKey()
	require.NoError(t, err)
	out, err := events.Seal(events.Draft{
		Domain: s.Domain, RequestID: id, Kind: events.KindRequested,
		Source: "writ://" + who.Principal.Domain + "/principals/" + who.Principal.Name, Time: time.Now(),
		Data: &events.Requested{
			Domain: s.Domain, Requester: events.PrincipalRef{Domain: who.Principal.Domain, Name: who.Principal.Name},
			Identity: who.JWT, Action: s.Action, Resource: s.Resource, Urgency: "normal", HolderXKey: xpub,
		},
	}, who.Key)
	require.NoError(t, err)
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	_, err = store.Append(t.Context(), js, "WRIT", out, 0, events.RequestFilter(s.Domain, id))
	require.NoError(t, err)
}

// The vote crosses as the approver signed it, and beta checks it against
// the keys of the domain it claims: an identity claiming alpha that
// alpha's account did not sign is refused by beta and counts for nothing.
func TestCrossDomainVoteCheckedByTarget(t *testing.T) {
	x := startXDomain(t, "beta")
	id := x.pendingInBeta(t)
	betaAccount, err := identity.LoadSeed(filepath.Join(x.beta.Dir, config.AccountSeed))
	require.NoError(t, err)
	creds, err := identity.IssueUser(betaAccount, identity.UserSpec{Domain: "alpha", Name: "mallory", Groups: []string{"sre-leads"}})
	require.NoError(t, err)
	impostor, err := identity.ParseCreds(creds)
	require.NoError(t, err)

	// On alice's connection to alpha (the server admits only alpha's
	// identities), signed by the impostor.
	opts, err := connect.Creds(filepath.Join(x.alpha.Dir, "creds", "alice.creds"))
	require.NoError(t, err)
	nc, err := x.alpha.Server.Connect(opts...)
	require.NoError(t, err)
	defer nc.Close()
	cl, err := client.New(nc, client.Options{Bundle: x.alpha.Runtime.Bundle, Home: "alpha"})
	require.NoError(t, err)
	seq, err := cl.Vote(t.Context(), impostor, "beta", id, client.Vote{Approve: true})
	require.NoError(t, err, "alpha's server carries a principal's vote to beta")
	r := x.beta.Await(id, 20*time.Second, func(s request.State) bool { return s.Answered[seq] != "" })
	assert.Equal(t, "untrusted-key", r.State.Answered[seq])
	assert.Empty(t, r.State.Votes)
	assert.Equal(t, request.StatusPending, r.State.Status)
}

// A reader of alpha lists beta's requests (reads cross) but cannot vote
// in beta: the asks are the principal's rows, and alpha's server refuses
// the publish; beta's history holds no vote of it.
func TestCrossDomainReaderCannotVote(t *testing.T) {
	x := startXDomain(t, "beta")
	id := x.pendingInBeta(t)
	errs := make(chan error, 8)
	opts, err := connect.Creds(filepath.Join(x.alpha.Dir, config.ReaderCreds))
	require.NoError(t, err)
	nc, err := x.alpha.Server.Connect(append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errs <- err:
		default:
		}
	}))...)
	require.NoError(t, err)
	defer nc.Close()
	cl, err := client.New(nc, client.Options{Bundle: x.alpha.Runtime.Bundle, Home: "alpha"})
	require.NoError(t, err)
	reach := cl.Reach(t.Context())
	assert.Equal(t, []string{"alpha", "beta"}, reach.Domains, "%v", reach.Missed)
	alice := x.alpha.Identity("alice")
	pending, err := cl.PendingIn(t.Context(), reach.Domains, alice.Principal)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	assert.Equal(t, id, pending[0].State.ID)

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	_, err = cl.Vote(ctx, alice, "beta", id, client.Vote{Approve: true})
	require.Error(t, err)
	select {
	case err := <-errs:
		require.ErrorIs(t, err, nats.ErrPermissionViolation)
		assert.Contains(t, err.Error(), "writ.beta."+id+".voted")
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not refuse the reader's vote")
	}
	// The barrier: alice's own vote, published after, is the only one.
	out, errOut, err := writ(t, x.cmd("alice", "approve", id)...)
	require.NoError(t, err, errOut)
	assertVoted(t, out, "approved", id, "beta")
	r := x.beta.Settle(id)
	require.Len(t, r.State.Votes, 1)
	assert.Equal(t, "alpha/alice", r.State.Votes[0].Voter.ID())
}

// Three domains, beta the hub: alpha's approver answers gamma's request,
// from spoke to spoke. gamma's answers reach alpha's inboxes through the
// hub (the leaf row for replies to any domain's inboxes).
func TestCrossDomainSpokeToSpoke(t *testing.T) {
	envs := writtest.Federation(t, map[string]writtest.Options{"gamma": {Flows: partnerFlows, Policies: partnerPoliciesFor("gamma")}}, "beta", "alpha", "gamma")
	alpha, gamma := envs["alpha"], envs["gamma"]
	id := gamma.Request("carol", client.Spec{Action: "restart", Resource: "prod/db", Reason: "from gamma"})
	require.Equal(t, request.StatusPending, gamma.Pending(id).State.Status)
	cmd := func(args ...string) []string {
		return append(args, "--dir", alpha.Dir, "--server", alpha.Server.ClientURL(), "--creds", filepath.Join(alpha.Dir, "creds", "alice.creds"))
	}
	var out, errOut string
	var err error
	require.Eventually(t, func() bool {
		out, errOut, err = writ(t, cmd("approvals", "list")...)
		return err == nil && strings.Contains(out, id)
	}, 30*time.Second, 100*time.Millisecond, "alice's list: %s %s %v", out, errOut, err)
	assert.Contains(t, out, "PENDING "+id+" in gamma")
	assert.Empty(t, errOut, "every domain answered")
	out, errOut, err = writ(t, cmd("approve", id)...)
	require.NoError(t, err, errOut)
	assertVoted(t, out, "approved", id, "gamma")
	assert.Equal(t, request.StatusGranted, gamma.Settle(id).State.Status)

	// gamma's link without that row (its leaf creds as issued before):
	// the hub refuses gamma's answers into alpha's inboxes, and alpha
	// cannot read gamma.
	gamma.StopAll()
	narrowLeaf(t, envs["beta"], gamma, "_INBOX.beta.>")
	gamma.StartServer()
	nc, err := alpha.Server.Connect(mustConnectOptions(t, filepath.Join(alpha.Dir, "creds", "alice.creds"))...)
	require.NoError(t, err)
	defer nc.Close()
	cl, err := client.New(nc, client.Options{Bundle: alpha.Runtime.Bundle, Home: "alpha"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { // gamma's server is linked again
		_, err := gamma.NC.Request("$JS.alpha.API.STREAM.INFO.WRIT", nil, time.Second)
		return err == nil
	}, 15*time.Second, 100*time.Millisecond)
	reach := cl.Reach(t.Context())
	assert.Equal(t, []string{"alpha", "beta"}, reach.Domains)
	require.ErrorIs(t, reach.Missed["gamma"], client.ErrUnread, "gamma is linked, and its answers do not cross")
}

// narrowLeaf re-issues spoke's leaf creds from hub with its replies
// allowed only into inboxes (a subject filter) instead of any domain's.
func narrowLeaf(t *testing.T, hub, spoke *writtest.Env, inboxes string) {
	t.Helper()
	account, err := identity.LoadSeed(filepath.Join(hub.Dir, config.AccountSeed))
	require.NoError(t, err)
	spec := identity.UserSpec{
		Domain: hub.Domain, Name: "leaf-" + spoke.Domain, Tags: []string{"role:" + string(access.Leaf)},
		ConnectionTypes: []string{natsjwt.ConnectionTypeLeafnode},
		Permissions: func(user string) (natsjwt.Permissions, error) {
			s := hub.Runtime.Config.Scope(user, "", access.Leaf)
			s.Spoke = spoke.Domain
			p, err := access.Permissions(s, access.Leaf)
			for i, a := range p.Pub.Allow {
				if a == "_INBOX.*.>" {
					p.Pub.Allow[i] = inboxes
				}
			}
			return p, err
		},
	}
	token, user, err := identity.SignUser(account, spec)
	require.NoError(t, err)
	seed, err := user.Seed()
	require.NoError(t, err)
	creds, err := natsjwt.FormatUserConfig(token, seed)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(spoke.Runtime.Config.Path(spoke.Runtime.Config.Federation.Creds), creds, 0o600))
}

func mustConnectOptions(t *testing.T, creds string) []nats.Option {
	t.Helper()
	opts, err := connect.Creds(creds)
	require.NoError(t, err)
	return opts
}

// A linked domain whose stream cannot be read: its requests are not
// listed (and the list says so), and an id alone is refused, since that
// domain could hold it too; --domain still acts.
func TestCrossDomainUnreadDomain(t *testing.T) {
	envs := writtest.Federation(t, map[string]writtest.Options{"beta": {NoServe: true}}, "beta", "alpha")
	alpha, beta := envs["alpha"], envs["beta"]
	js, err := jetstream.New(beta.NC)
	require.NoError(t, err)
	require.NoError(t, js.DeleteStream(t.Context(), "WRIT"))
	id := alpha.Request("carol", client.Spec{Action: "restart", Resource: "prod/db"})
	alpha.Pending(id)
	cmd := func(args ...string) []string {
		return append(args, "--dir", alpha.Dir, "--server", alpha.Server.ClientURL(), "--creds", filepath.Join(alpha.Dir, "creds", "alice.creds"))
	}
	var out, errOut string
	require.Eventually(t, func() bool { // the leafnode links beta
		out, errOut, err = writ(t, cmd("approvals", "list")...)
		return err == nil && strings.Contains(errOut, "beta")
	}, 15*time.Second, 100*time.Millisecond, "%s %s", out, errOut)
	assert.Contains(t, out, "PENDING "+id+" in alpha")
	assert.Contains(t, errOut, "beta's requests are not shown")
	assert.Contains(t, errOut, "stream not found")

	_, _, err = writ(t, cmd("approve", id)...)
	require.ErrorIs(t, err, errWhichDomain)
	assert.Contains(t, err.Error(), "cannot tell which domain holds "+id+": in beta, the stream cannot be read from here")
	out, errOut, err = writ(t, cmd("approve", id, "--domain", "alpha")...)
	require.NoError(t, err, errOut)
	assertVoted(t, out, "approved", id, "alpha")
	r := alpha.Await(id, 20*time.Second, func(s request.State) bool { return len(s.Votes) > 0 })
	assert.Equal(t, "alpha/alice", r.State.Votes[0].Voter.ID())
}

// The live watch hears another domain's request as it comes, across the
// leafnode, and answers it.
func TestCrossDomainWatchLive(t *testing.T) {
	x := startXDomain(t, "beta")
	typeIn, out, errOut := lineWatch(t, x.cmd("alice", "watch"), "Watching for requests alpha/alice may answer in alpha, beta")

	id := x.pendingInBeta(t)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "PENDING  "+id) }, 10*time.Second, 20*time.Millisecond, out.String())
	assert.Contains(t, lineWith(out.String(), "PENDING  "+id), "beta/carol (origin beta) wants restart on beta/prod/db")
	_, err := io.WriteString(typeIn, "approve "+id+"\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return strings.Contains(out.String(), "RESULT   approved "+id+" in beta") || strings.Contains(out.String(), "RESULT   vote on "+id+" in beta recorded")
	}, 10*time.Second, 20*time.Millisecond, out.String()+errOut.String())
	assert.Equal(t, request.StatusGranted, x.beta.Settle(id).State.Status)
}

// assertVoted checks what approve or deny printed: the vote's outcome in
// domain, or, when the pipeline did not answer within the command's short
// wait (a loaded machine, reads across two leafnodes), that it was
// recorded there. The test then checks the outcome in the target's record.
func assertVoted(t *testing.T, out, past, id, domain string) {
	t.Helper()
	assert.Regexp(t, "^("+past+" "+id+" in "+domain+"; |vote on "+id+" in "+domain+" recorded at #)", out)
}
