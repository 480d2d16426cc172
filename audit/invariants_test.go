package audit_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/request"
)

// want is an error finding a crafted history must give.
type want struct {
	check   string
	seq     uint64
	problem string // a part of the finding's problem
}

// requireErrors checks that the report's errors are exactly those wanted,
// in order: none but those.
func requireErrors(t *testing.T, rep *audit.Report, wants ...want) {
	t.Helper()
	errs := errorsOf(rep)
	require.Len(t, errs, len(wants), "errors: %v", errs)
	for i, w := range wants {
		assert.Equal(t, w.check, errs[i].Check, "finding %d", i)
		assert.Equal(t, w.seq, errs[i].Seq, "finding %d", i)
		assert.Contains(t, errs[i].Problem, w.problem, "finding %d", i)
	}
}

// Requests of the sample policies: one Carol needs two SRE leads for, one
// the deploy bot is allowed at once (grants capped at ten minutes), one no
// one is allowed.
func (c *crafter) review() string {
	id := c.request("carol", client.Spec{Action: "restart", Resource: fmt.Sprintf("prod/svc-%d", len(c.msgs))})
	require.Equal(c.t, events.OutcomeReview, c.evaluate(id).Outcome)
	return id
}

func (c *crafter) allowed() string {
	id := c.request("deploy-bot", client.Spec{Action: "deploy", Resource: fmt.Sprintf("staging/svc-%d", len(c.msgs))})
	ev := c.evaluate(id)
	require.Equal(c.t, events.OutcomeAllow, ev.Outcome)
	require.EqualValues(c.t, 600, ev.MaxTTLSeconds)
	return id
}

func (c *crafter) forbidden() string {
	id := c.request("carol", client.Spec{Action: "drop-database", Resource: fmt.Sprintf("prod/db-%d", len(c.msgs))})
	require.Equal(c.t, events.OutcomeDeny, c.evaluate(id).Outcome)
	return id
}

func (c *crafter) approve(id string, by ...string) uint64 {
	d := &events.Approved{}
	for _, n := range by {
		d.Approvers = append(d.Approvers, events.PrincipalRef{Domain: c.r.env.Domain, Name: n})
	}
	return c.emit(id, events.KindApproved, d)
}

// now is the crafter's clock to the second, as grants are.
func (c *crafter) now() time.Time { return c.clock.UTC().Truncate(time.Second) }

// Histories crafted with the real keys, each event signed by whoever may
// emit it and chained right, so that only the state machine's invariant is
// broken: the verifier reports exactly that, at that event — and nothing
// for the controls beside them. Each history follows the real run's trail,
// which verifies.
func TestInvariantViolationsAreReported(t *testing.T) {
	r := keyedShared(t)
	const invariant = audit.CheckInvariant
	for _, tc := range []struct {
		name  string
		craft func(c *crafter) []want
	}{{
		name: "approved before quorum",
		craft: func(c *crafter) []want {
			id := c.review()
			c.vote(id, "alice", true)
			return []want{{invariant, c.approve(id, "alice"), "flows not satisfied"}}
		},
	}, {
		name: "granted before quorum",
		craft: func(c *crafter) []want {
			id := c.review()
			c.vote(id, "alice", true)
			return []want{{invariant, c.grant(id, c.now(), 5*time.Minute), "granted in pending"}}
		},
	}, {
		name: "approved over a counted denial",
		craft: func(c *crafter) []want {
			id := c.review()
			c.vote(id, "alice", true)
			c.vote(id, "bob", false)
			return []want{{invariant, c.approve(id, "alice", "bob"), "a denial counts"}}
		},
	}, {
		name: "self-approval refused (control)",
		craft: func(c *crafter) []want {
			id := c.review()
			self := c.vote(id, "carol", true)
			carol, _ := c.r.who["carol"].Key.PublicKey()
			c.emit(id, events.KindRefused, &events.Refused{RefSeq: self, RefKind: "voted", RefSigner: carol,
				Code: request.Code(request.ErrSelfApproval), Reason: request.ErrSelfApproval.Error()})
			c.advance(time.Minute)
			c.grant(c.allowed(), c.now(), 5*time.Minute)
			return nil
		},
	}, {
		name: "redeemed twice",
		craft: func(c *crafter) []want {
			id := c.allowed()
			c.grant(id, c.now(), 5*time.Minute)
			c.redeem(id)
			return []want{{invariant, c.redeem(id), "closed (redeemed)"}}
		},
	}, {
		name: "granted for longer than the policy's max ttl",
		craft: func(c *crafter) []want {
			return []want{{invariant, c.grant(c.allowed(), c.now(), 11*time.Minute), "above the policy's 600s"}}
		},
	}, {
		name: "granted for the policy's max ttl (control)",
		craft: func(c *crafter) []want {
			c.grant(c.allowed(), c.now(), 10*time.Minute)
			return nil
		},
	}, {
		name: "redeemed after the grant expired",
		craft: func(c *crafter) []want {
			id := c.allowed()
			c.grant(id, c.now(), time.Minute)
			c.advance(time.Minute + request.RedeemLeeway + time.Second)
			return []want{{invariant, c.redeem(id), "outside the grant's lifetime"}}
		},
	}, {
		// A redeemer's clock may run behind: its word within the leeway stands.
		name: "redeemed after the grant expired, within the leeway (control)",
		craft: func(c *crafter) []want {
			id := c.allowed()
			c.grant(id, c.now(), time.Minute)
			c.advance(time.Minute + request.RedeemLeeway - time.Second)
			c.redeem(id)
			return nil
		},
	}, {
		name: "redeemed after revocation",
		craft: func(c *crafter) []want {
			id := c.allowed()
			c.grant(id, c.now(), 5*time.Minute)
			bot := c.r.who["deploy-bot"]
			by := events.PrincipalRef{Domain: bot.Principal.Domain, Name: bot.Principal.Name}
			c.as(id, events.KindRevoke, bot, &events.Revoke{Domain: c.r.env.Domain, By: by, Identity: bot.JWT, Reason: "wrong build"})
			c.emit(id, events.KindRevoked, &events.Revoked{By: by, Reason: "wrong build"})
			return []want{{invariant, c.redeem(id), "closed (revoked)"}}
		},
	}, {
		// The connection a grant opened through the NATS callout lives
		// until the grant expires: revoking it is recorded, to end it.
		name: "revoked while the redeemed grant is in use (control)",
		craft: func(c *crafter) []want {
			id := c.allowed()
			c.grant(id, c.now(), 5*time.Minute)
			c.redeem(id)
			c.advance(time.Minute)
			bot := c.r.who["deploy-bot"]
			by := events.PrincipalRef{Domain: bot.Principal.Domain, Name: bot.Principal.Name}
			c.as(id, events.KindRevoke, bot, &events.Revoke{Domain: c.r.env.Domain, By: by, Identity: bot.JWT, Reason: "compromised host"})
			c.emit(id, events.KindRevoked, &events.Revoked{By: by, Reason: "compromised host"})
			return nil
		},
	}, {
		name: "revoked after the redeemed grant expired",
		craft: func(c *crafter) []want {
			id := c.allowed()
			c.grant(id, c.now(), time.Minute)
			c.redeem(id)
			c.advance(time.Minute + request.RedeemLeeway + time.Second)
			by := events.PrincipalRef{Domain: "acme", Name: "deploy-bot"}
			return []want{{invariant, c.emit(id, events.KindRevoked, &events.Revoked{By: by, Reason: "too late"}), "closed (redeemed)"}}
		},
	}, {
		name: "granted twice",
		craft: func(c *crafter) []want {
			id := c.allowed()
			c.grant(id, c.now(), 5*time.Minute)
			return []want{{invariant, c.grant(id, c.now(), 5*time.Minute), "closed (granted)"}}
		},
	}, {
		name: "denied by an approver, then granted",
		craft: func(c *crafter) []want {
			id := c.review()
			c.vote(id, "bob", false)
			c.emit(id, events.KindDenied, &events.Denied{By: []events.PrincipalRef{{Domain: "acme", Name: "bob"}}, Reason: "not now"})
			return []want{{invariant, c.grant(id, c.now(), 5*time.Minute), "closed (denied)"}}
		},
	}, {
		name: "denied by policy, then granted",
		craft: func(c *crafter) []want {
			return []want{{invariant, c.grant(c.forbidden(), c.now(), 5*time.Minute), "closed (denied)"}}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCrafter(t, r)
			wants := tc.craft(c)
			requireErrors(t, c.verify(audit.Options{}), wants...)
		})
	}
}

// Carol approves her own request and nobody refuses it; with bob's
// approval the approval component declares two. The self-approval does not
// count, so the approval is an unjustified decision (an error at once); the
// self-approval itself is input the pipeline never answered — in flight
// while the trail ends moments after it (a warning), an error once the
// trail has gone on past it.
func TestUnrefusedSelfApproval(t *testing.T) {
	r := keyedShared(t)
	c := newCrafter(t, r)
	id := c.review()
	self := c.vote(id, "carol", true)
	c.vote(id, "bob", true)
	approved := c.approve(id, "carol", "bob")
	refusal := request.ErrSelfApproval.Error()

	rep := c.verify(audit.Options{})
	requireErrors(t, rep, want{audit.CheckInvariant, approved, "flows not satisfied"})
	assert.True(t, slices.ContainsFunc(rep.Findings, func(f audit.Finding) bool {
		return f.Check == audit.CheckInput && f.Severity == audit.SeverityWarning && f.Seq == self &&
			f.RequestID == id && f.Kind == "voted" && strings.HasSuffix(f.Problem, refusal)
	}), "the self-approval, unanswered but in flight")

	c.advance(time.Minute)
	c.grant(c.allowed(), c.now(), 5*time.Minute)
	requireErrors(t, c.verify(audit.Options{}),
		want{audit.CheckInvariant, approved, "flows not satisfied"}, want{audit.CheckInput, self, refusal})
}
