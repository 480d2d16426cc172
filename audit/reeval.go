package audit

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/policy"
	"github.com/writ-dev/writ/request"
)

// reevaluator re-computes recorded evaluations from the policy versions
// recorded in the trail.
type reevaluator struct {
	versions map[string]*version // by events.PolicyID
}

type version struct {
	set   *policy.Set
	flows *policy.Flows
	err   error
}

func newReevaluator() *reevaluator { return &reevaluator{versions: map[string]*version{}} }

// add compiles a recorded policy version.
func (re *reevaluator) add(p *events.Policy) {
	id := events.PolicyID(p.PolicyDigest, p.FlowsDigest)
	if _, ok := re.versions[id]; ok {
		return
	}
	v := &version{}
	v.set, v.err = policy.FromSource([]byte(p.PolicySource), p.PolicyDigest)
	if v.err == nil {
		v.flows, v.err = policy.ParseFlows([]byte(p.FlowsSource))
		if v.err == nil && v.flows.Digest() != p.FlowsDigest {
			v.err = fmt.Errorf("recorded flows have digest %s, not %s", v.flows.Digest(), p.FlowsDigest)
		}
	}
	re.versions[id] = v
}

// knows reports whether the trail recorded the policy version ev names.
func (re *reevaluator) knows(ev *events.Evaluated) bool {
	return re.versions[events.PolicyID(ev.PolicyDigest, ev.FlowsDigest)] != nil
}

// check re-evaluates the evaluation just folded into st and says what
// differs from the record, or "".
// ClockSkew is how far the time a policy component says it decided at may
// be from when the stream stored its decision.
const ClockSkew = 5 * time.Minute

func (re *reevaluator) check(st request.State, ev *events.Evaluated, stored time.Time) string {
	v := re.versions[events.PolicyID(ev.PolicyDigest, ev.FlowsDigest)]
	switch {
	case v == nil:
		return fmt.Sprintf("decided under policy %s and flows %s, which the trail does not record before it", short(ev.PolicyDigest), short(ev.FlowsDigest))
	case v.err != nil:
		return fmt.Sprintf("the recorded policy version does not compile: %v", v.err)
	}
	p := st.Requester
	if rp := ev.Principal; rp.Domain != p.Domain || rp.Name != p.Name || rp.Key != p.Key || !slices.Equal(rp.Groups, p.Groups) {
		return fmt.Sprintf("evaluated %s/%s (key %s, groups %v); the requester is %s (key %s, groups %v)",
			rp.Domain, rp.Name, rp.Key, rp.Groups, p.ID(), p.Key, p.Groups)
	}
	ctx, err := policy.ContextFromRecord(ev.Context)
	if err != nil {
		return err.Error()
	}
	// The decision's time sets its deadlines and what time-bound policies
	// say: it must be when the decision was made.
	if d := ctx.Time.Sub(stored); d > ClockSkew || d < -ClockSkew {
		return fmt.Sprintf("decided as of %s, but stored at %s", ctx.Time.Format(time.RFC3339), stored.Format(time.RFC3339))
	}
	req := st.Request
	if ctx.Urgency != req.Urgency || ctx.Reason != req.Reason || ctx.Ticket != req.Ticket || ctx.Origin != p.Domain ||
		ctx.TTL != time.Duration(req.TTLSeconds)*time.Second || !maps.Equal(ctx.Params, nonEmpty(req.Params)) {
		return "the evaluated context is not the request's"
	}
	again := policy.Evaluate(v.set, v.flows, policy.Input{
		Principal: identity.Principal{Domain: p.Domain, Name: p.Name, Key: p.Key, Groups: p.Groups},
		Action:    req.Action, Domain: st.Domain, Resource: req.Resource, Context: ctx,
	}, nil)
	if same(ev, again) {
		return ""
	}
	// A deny for an error outside the policy (state that could not be
	// read) is the fail-closed answer, whatever the policy would say.
	if ev.Outcome == events.OutcomeDeny && len(ev.Errors) > 0 && len(ev.Reasons) == 0 {
		return ""
	}
	return fmt.Sprintf("recorded %s by %v (max ttl %ds, flows %v); the recorded policy gives %s by %v (max ttl %ds, flows %v)",
		ev.Outcome, ev.Reasons, ev.MaxTTLSeconds, flowNames(ev.Flows), again.Outcome, again.Reasons, again.MaxTTLSeconds, flowNames(again.Flows))
}

func nonEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func same(a, b *events.Evaluated) bool {
	if a.Outcome != b.Outcome || !sameSet(a.Reasons, b.Reasons) || a.MaxTTLSeconds != b.MaxTTLSeconds ||
		a.BreakGlass != b.BreakGlass || !sameSet(a.Errors, b.Errors) {
		return false
	}
	if (a.ExpiresAt == nil) != (b.ExpiresAt == nil) || (a.ExpiresAt != nil && !a.ExpiresAt.Equal(*b.ExpiresAt)) {
		return false
	}
	fa, _ := json.Marshal(a.Flows)
	fb, _ := json.Marshal(b.Flows)
	return string(fa) == string(fb)
}

func flowNames(fs []events.Flow) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Name
	}
	return out
}

// sameSet compares lists whose order Cedar does not promise.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
