package audit_test

import (
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
)

// lock appends a lock (or unlock) asked by name and carried out by the
// approval component, as its own history, and returns the locked event's
// sequence.
func (c *crafter) lock(name string, target events.LockTarget, unlock bool) uint64 {
	c.t.Helper()
	who := c.r.who[name]
	uid, err := uuid.NewV7()
	require.NoError(c.t, err)
	id := uid.String()
	c.reqs[id] = &crafted{who: who}
	by := events.PrincipalRef{Domain: who.Principal.Domain, Name: who.Principal.Name}
	c.as(id, events.KindLock, who, &events.Lock{Domain: c.r.env.Domain, By: by, Identity: who.JWT, Target: target, Unlock: unlock, Reason: "test"})
	return c.emit(id, events.KindLocked, &events.Locked{By: by, Target: target, Unlock: unlock, Reason: "test"})
}

// A grant or a redemption for a principal, a key or a domain the trail
// had locked at the time is an error: the lock promises there is none,
// whatever the lock list in the bucket said (an operator can delete a key
// from it). Once unlocked, the same is fine; the lock is judged as of
// each event, in stream order.
func TestGrantToALockedPrincipalIsFlagged(t *testing.T) {
	r := keyedShared(t)
	bot := r.who["deploy-bot"]
	deploy := client.Spec{Action: "deploy", Resource: "staging/web"}
	for _, target := range []events.LockTarget{
		{Type: events.LockPrincipal, Name: "acme/deploy-bot"},
		{Type: events.LockKey, Name: bot.Principal.Key},
		{Type: events.LockDomain, Name: "acme"},
	} {
		t.Run(target.Type, func(t *testing.T) {
			c := newCrafter(t, r)
			before := c.request("deploy-bot", deploy)
			c.evaluate(before)
			c.grant(before, c.clock, 10*time.Minute)
			c.lock("alice", target, false)
			c.redeem(before) // granted before the lock, redeemed after it
			id := c.request("deploy-bot", deploy)
			c.evaluate(id)
			granted := c.grant(id, c.clock, 10*time.Minute)
			redeemed := c.redeem(id)
			c.lock("alice", target, true)
			after := c.request("deploy-bot", deploy)
			c.evaluate(after)
			c.grant(after, c.clock, 10*time.Minute)
			c.redeem(after)

			rep := c.verify(audit.Options{})
			var flagged []uint64
			for _, f := range errorsOf(rep) {
				require.Equal(t, audit.CheckLock, f.Check, f.String())
				assert.Contains(t, f.Problem, target.Name)
				flagged = append(flagged, f.Seq)
			}
			slices.Sort(flagged)
			redeemedBefore := c.msgs[slices.IndexFunc(c.msgs, func(m events.Message) bool {
				return inspect(r, m).RequestID == before && inspect(r, m).Kind == events.KindRedeemed
			})].Seq
			assert.Equal(t, []uint64{redeemedBefore, granted, redeemed}, flagged,
				"the earlier grant's redemption while locked, the grant and redemption while locked; nothing once unlocked")
		})
	}
}
