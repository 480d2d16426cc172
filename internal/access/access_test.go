package access_test

import (
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/access"
)

// TestPermissionsTable checks the table's decisions subject by subject,
// as the server matches them: what each role needs is allowed, and the
// dangerous API on Writ's streams is refused to every role but the
// operator.
func TestPermissionsTable(t *testing.T) {
	const user = "UCXB6SPQSY5LQRNIOJ5AVZCDMXVSWG3MAAJKEVJYVJ5JQCSLKQY3UT6B"
	type check struct {
		subject string
		pub     bool // else sub
		allowed bool
	}
	pub := func(s string, ok bool) check { return check{s, true, ok} }
	sub := func(s string, ok bool) check { return check{s, false, ok} }
	dangerous := []check{
		pub("$JS.API.STREAM.UPDATE.WRIT", false), pub("$JS.acme.API.STREAM.UPDATE.WRIT", false),
		pub("$JS.API.STREAM.DELETE.WRIT", false), pub("$JS.API.STREAM.PURGE.WRIT", false),
		pub("$JS.API.STREAM.MSG.DELETE.WRIT", false), pub("$JS.API.CONSUMER.DELETE.WRIT.writ-issuer-acme", false),
		pub("$JS.API.CONSUMER.PAUSE.WRIT.writ-issuer-acme", false), pub("$JS.API.STREAM.PURGE.KV_writ-locks", false),
		pub("$JS.API.STREAM.UPDATE.KV_writ-grants-used", false), pub("$JS.API.STREAM.DELETE.KV_writ-locks", false),
		pub("$JS.API.STREAM.PURGE.WRIT_NOTIFY", false), pub("$JS.API.CONSUMER.DURABLE.CREATE.WRIT.x", false),
		pub("$JS.API.CONSUMER.DELETE.WRIT_TIMERS.writ-timers-acme", false),
		sub("$SYS.>", false), sub("_INBOX.acme.UOTHER.>", false), sub("_INBOX.>", false),
	}
	cases := map[access.Role][]check{
		access.Reader: append([]check{
			pub("$JS.API.DIRECT.GET.WRIT", true), pub("$JS.beta.API.DIRECT.GET.WRIT", true),
			pub("$JS.API.STREAM.INFO.WRIT", true), sub("writ.>", true), sub("_INBOX.acme."+user+".x", true),
			pub("writ.acme.x.requested", false), pub("$KV.writ-locks.principal.acme.carol", false),
			pub("$JS.API.CONSUMER.CREATE.WRIT.x.writ.>", false),
		}, dangerous...),
		access.Principal: append([]check{
			pub("writ.acme.x.requested", true), pub("writ.beta.x.voted", true), pub("writ.acme.x.lock", true),
			pub("writ.acme.x.granted", false), pub("writ.acme.x.evaluated", false), pub("writ.acme.x.counted", false),
			pub("$KV.writ-resource-state.acme.prod", false),
			pub("$JS.API.CONSUMER.CREATE.WRIT.writ-issuer-acme.writ.acme.*.approved", false),
		}, dangerous...),
		access.Issuer: append([]check{
			pub("writ.acme.x.granted", true), pub("writ.acme.x.approved", false), pub("writ.beta.x.granted", false),
			pub("writ.acme.x.counted", false),
			pub("$JS.API.CONSUMER.MSG.NEXT.WRIT.writ-issuer-acme", true),
			pub("$JS.API.CONSUMER.MSG.NEXT.WRIT.writ-policy-acme", false),
			pub("$JS.API.CONSUMER.DELETE.KV_writ-locks.abc", true),
			pub("$KV.writ-locks.x", false),
		}, dangerous...),
		access.Approval: append([]check{
			pub("$JS.API.STREAM.PURGE.WRIT_TIMERS", true), pub("$JS.API.STREAM.MSG.DELETE.WRIT_TIMERS", true),
			pub("$KV.writ-locks.principal.acme.carol", true), pub("$KV.writ-grants-used.x", false),
			pub("writ-timers.acme.schedule.x", true),
			pub("writ.acme.x.counted", true), pub("writ.beta.x.counted", false),
		}, dangerous...),
		access.Redeemer: append([]check{
			pub("$KV.writ-grants-used.x", true), pub("$KV.writ-locks.x", false), pub("writ.acme.x.redeemed", true),
			pub("$SYS.REQ.SERVER.PING.CONNZ", false), pub("$SYS.REQ.SERVER.NSRV.KICK", false),
		}, dangerous...),
		// writ callout's system-account user: the connection lists and
		// the kick, and nothing else at all.
		access.CalloutSystem: append([]check{
			pub("$SYS.REQ.SERVER.PING.CONNZ", true), pub("$SYS.REQ.SERVER.NSRV.CONNZ", true), pub("$SYS.REQ.SERVER.NSRV.KICK", true),
			pub("$SYS.REQ.SERVER.PING", false), pub("$SYS.REQ.SERVER.NSRV.RELOAD", false), pub("$SYS.REQ.SERVER.PING.VARZ", false),
			pub("$SYS.REQ.ACCOUNT.AACC.CLAIMS.UPDATE", false), pub("$SYS.REQ.USER.AUTH", false),
			pub("writ.acme.x.requested", false), pub("$JS.API.STREAM.INFO.WRIT", false), pub("act.acme.deploy.x", false),
			sub("_INBOX.acme."+user+".x", true), sub("writ.>", false),
		}, dangerous...),
	}
	for role, checks := range cases {
		scope := access.Scope{Domain: "acme", User: user}
		if role == access.Issuer {
			scope.Consumers = issuerDurables()
		}
		p, err := access.Permissions(scope, role)
		require.NoError(t, err)
		for _, c := range checks {
			perm := p.Sub
			if c.pub {
				perm = p.Pub
			}
			assert.Equal(t, c.allowed, access.Allows(perm, c.subject), "%s: %s (pub %v)", role, c.subject, c.pub)
		}
	}
	op, err := access.Permissions(access.Scope{Domain: "acme", User: user}, access.Operator)
	require.NoError(t, err)
	for _, c := range dangerous {
		assert.True(t, access.Allows(op.Pub, c.subject) || !c.pub, "operator: %s", c.subject)
	}
}

func issuerDurables() []consumers.Durable {
	return consumers.Env{Domain: "acme"}.DurablesOf("issuer")
}

// TestUnionKeepsTheDenies: a replica running the approval component (which
// may purge its timers) and the issuer still may not purge the trail.
func TestUnionKeepsTheDenies(t *testing.T) {
	const user = "UCXB6SPQSY5LQRNIOJ5AVZCDMXVSWG3MAAJKEVJYVJ5JQCSLKQY3UT6B"
	p, err := access.Permissions(access.Scope{Domain: "acme", User: user, Consumers: issuerDurables()}, access.Approval, access.Issuer)
	require.NoError(t, err)
	for s, want := range map[string]bool{
		"$JS.API.STREAM.PURGE.WRIT_TIMERS": true, "$JS.API.STREAM.PURGE.WRIT": false,
		"$JS.API.STREAM.MSG.DELETE.WRIT": false, "$JS.acme.API.STREAM.PURGE.WRIT": false,
		"$JS.API.STREAM.PURGE.KV_writ-locks": false, "$JS.API.CONSUMER.DELETE.WRIT.writ-issuer-acme": false,
		"writ.acme.x.granted": true, "writ.acme.x.approved": true,
	} {
		assert.Equal(t, want, access.Allows(p.Pub, s), s)
	}
}

// TestPrincipalJWTStaysSmall: a principal's user JWT travels inside every
// request and vote it signs, whose schema caps it at 8 KiB.
func TestPrincipalJWTStaysSmall(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Init(dir, "acme")
	require.NoError(t, err)
	for _, name := range []string{"carol", "alice"} {
		id, err := identity.LoadCreds(cfg.Path("creds/" + name + ".creds"))
		require.NoError(t, err)
		assert.Less(t, len(id.JWT), 4096, "%s's JWT", name)
	}
}

// TestRewrites: what serve warns about, in both spellings of the API.
func TestRewrites(t *testing.T) {
	const user = "UCXB6SPQSY5LQRNIOJ5AVZCDMXVSWG3MAAJKEVJYVJ5JQCSLKQY3UT6B"
	comp, err := access.Permissions(access.Scope{Domain: "acme", User: user}, access.Components...)
	require.NoError(t, err)
	assert.Empty(t, access.Rewrites(comp, "WRIT"), "the components rewrite nothing")
	op, err := access.Permissions(access.Scope{Domain: "acme", User: user}, access.Operator)
	require.NoError(t, err)
	assert.Len(t, access.Rewrites(op, "WRIT"), 8)
	domainOnly := jwt.Permissions{Pub: jwt.Permission{Allow: []string{"$JS.*.API.STREAM.UPDATE.WRIT"}}}
	assert.Equal(t, []string{"$JS.*.API.STREAM.UPDATE.WRIT"}, access.Rewrites(domainOnly, "WRIT"))
}

// TestLeafCarriesCrossDomainApprovals: what a spoke's link (issued by hub
// acme for spoke globex) lets cross for an approver of one domain to
// answer another's requests from their own setup — the read of the
// stream (its info first: is the domain in reach), the vote or
// revocation, and the answers back into the asker's inboxes, the hub's or
// another spoke's — and nothing else of the other domain's.
func TestLeafCarriesCrossDomainApprovals(t *testing.T) {
	p, err := access.Permissions(access.Scope{Domain: "acme", Spoke: "globex"}, access.Leaf)
	require.NoError(t, err)
	for _, c := range []struct {
		subject string
		pub, ok bool
		whatFor string
	}{
		{"$JS.acme.API.STREAM.INFO.WRIT", true, true, "is acme in reach"},
		{"$JS.gamma.API.DIRECT.GET.WRIT", true, true, "read another spoke's requests"},
		{"writ.acme.0195a7a0-0000-7000-8000-000000000000.voted", true, true, "vote in the hub"},
		{"writ.gamma.0195a7a0-0000-7000-8000-000000000000.revoke", true, true, "revoke in another spoke"},
		{"_INBOX.acme.UALICE.x", true, true, "answer the hub's approver"},
		{"_INBOX.gamma.UALICE.x", true, true, "answer another spoke's approver (through the hub)"},
		{"_INBOX.globex.UALICE.x", false, true, "hear answers for its own approvers"},
		{"_INBOX.acme.UALICE.x", false, false, "hear the hub's inboxes"},
		{"$JS.globex.API.DIRECT.GET.WRIT", false, true, "answer reads of its own stream"},
		{"$JS.gamma.API.DIRECT.GET.WRIT", false, false, "hear (and answer first) reads of another spoke's stream"},
		{"writ.acme.0195a7a0-0000-7000-8000-000000000000.approved", true, false, "decide in the hub"},
		{"$JS.acme.API.DIRECT.GET.KV_writ-locks", true, false, "read the hub's buckets"},
		{"$JS.acme.API.CONSUMER.CREATE.WRIT.x", true, false, "make a consumer on the hub's stream"},
		{"$JS.acme.API.STREAM.UPDATE.WRIT", true, false, "edit the hub's stream"},
	} {
		perm := p.Sub
		if c.pub {
			perm = p.Pub
		}
		assert.Equal(t, c.ok, access.Allows(perm, c.subject), "%s: %s (pub %v)", c.whatFor, c.subject, c.pub)
	}
}

// TestLeafOfHubOfHubs: the link hub acme issues hub globex, which serves
// spokes of its own (initech, umbrella) and links to acme as a spoke,
// carries the events, inboxes and reads of globex and its spokes, and of
// no other domain.
func TestLeafOfHubOfHubs(t *testing.T) {
	p, err := access.Permissions(access.Scope{Domain: "acme", Spoke: "globex", Behind: []string{"initech", "umbrella"}}, access.Leaf)
	require.NoError(t, err)
	const id = "0195a7a0-0000-7000-8000-000000000000"
	for _, c := range []struct {
		subject string
		pub, ok bool
		whatFor string
	}{
		{"writ.globex." + id + ".granted", true, true, "its own decisions"},
		{"writ.initech." + id + ".granted", true, true, "a decision of a spoke behind it"},
		{"writ.umbrella." + id + ".evaluated", true, true, "an evaluation of a spoke behind it"},
		{"writ.acme." + id + ".requested", true, true, "ask the hub"},
		{"writ.gamma." + id + ".voted", true, true, "vote in another of the hub's spokes"},
		{"_INBOX.initech.UALICE.x", false, true, "hear answers for a spoke behind it"},
		{"$JS.umbrella.API.DIRECT.GET.WRIT", false, true, "answer reads of a spoke behind it"},
		{"$JS.acme.API.DIRECT.GET.WRIT", true, true, "read the hub"},
		{"writ.acme." + id + ".granted", true, false, "decide in the hub"},
		{"writ.gamma." + id + ".approved", true, false, "decide in a domain not behind it"},
		{"_INBOX.gamma.UALICE.x", false, false, "hear the inboxes of a domain not behind it"},
		{"$JS.gamma.API.DIRECT.GET.WRIT", false, false, "hear reads of a domain not behind it"},
	} {
		perm := p.Sub
		if c.pub {
			perm = p.Pub
		}
		assert.Equal(t, c.ok, access.Allows(perm, c.subject), "%s: %s (pub %v)", c.whatFor, c.subject, c.pub)
	}
	for _, bad := range [][]string{{"acme"}, {"no such"}} {
		_, err := access.Permissions(access.Scope{Domain: "acme", Spoke: "globex", Behind: bad}, access.Leaf)
		assert.Error(t, err, "behind %v", bad)
	}
}
