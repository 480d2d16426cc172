package request

import (
	"slices"
	"sort"
	"time"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
)

// Progress is where one approval flow of a request stands. It is derived
// from the evaluation, the counted votes and the escalations, replayed in
// stream order: a vote counts for the stage that was open when it came.
type Progress struct {
	Flow       events.Flow
	Stage      int       // the open stage; len(Flow.Stages) once every stage is satisfied
	StageStart time.Time // when the open stage began
	Approvals  [][]identity.Principal
	Denials    []identity.Principal
	Escalated  []bool         // per stage
	Extra      []events.Stage // per stage: approvers added by escalation
}

// Done reports whether every stage of the flow is satisfied.
func (p Progress) Done() bool { return p.Stage >= len(p.Flow.Stages) }

// Denied reports whether the flow has enough counted denials to end the request.
func (p Progress) Denied() bool { return len(p.Denials) >= max(p.Flow.DenyQuorum, 1) }

// Deadline is when the open stage expires (zero once done).
func (p Progress) Deadline() time.Time {
	if p.Done() {
		return time.Time{}
	}
	return p.StageStart.Add(time.Duration(p.Flow.Stages[p.Stage].DeadlineSeconds) * time.Second)
}

// EscalationDue is when the open stage escalates, if it has an escalation
// still to come.
func (p Progress) EscalationDue() (time.Time, bool) {
	if p.Done() || p.Escalated[p.Stage] {
		return time.Time{}, false
	}
	e := p.Flow.Stages[p.Stage].Escalate
	if e == nil {
		return time.Time{}, false
	}
	return p.StageStart.Add(time.Duration(e.AfterSeconds) * time.Second), true
}

// MissingGroups lists the groups of the open stage, in all-groups mode,
// that no approval counts for yet (a request of domain): such a stage can
// have its required number of approvals and still wait. Nil for a stage
// in the usual mode, or once the flow is done.
func (p Progress) MissingGroups(domain string) []string {
	if p.Done() {
		return nil
	}
	return missingGroups(p.Flow.Stages[p.Stage], p.Approvals[p.Stage], domain)
}

// eligible reports whether voter may answer the open stage.
func (p Progress) eligible(voter identity.Principal, domain string) bool {
	if p.Done() {
		return false
	}
	return Eligible(p.Flow.Stages[p.Stage], voter, domain) || Eligible(p.Extra[p.Stage], voter, domain)
}

// counted reports whether voter already counts in this flow (in the open
// stage, when the flow lets approvers repeat).
func (p Progress) counted(voter identity.Principal) bool {
	same := func(q identity.Principal) bool { return q.ID() == voter.ID() || q.Key == voter.Key }
	if slices.ContainsFunc(p.Denials, same) {
		return true
	}
	if p.Flow.RepeatApprovers {
		return !p.Done() && slices.ContainsFunc(p.Approvals[p.Stage], same)
	}
	for _, a := range p.Approvals {
		if slices.ContainsFunc(a, same) {
			return true
		}
	}
	return false
}

// WouldCount reports whether a vote by voter now counts in this flow.
func (p Progress) WouldCount(voter identity.Principal, domain string) bool {
	return p.wouldCount(voter, domain)
}

func (p Progress) wouldCount(voter identity.Principal, domain string) bool {
	return p.eligible(voter, domain) && !p.counted(voter)
}

func (p *Progress) count(v Vote, domain string) {
	if !p.wouldCount(v.Voter, domain) {
		return
	}
	if !v.Approve {
		p.Denials = append(p.Denials, v.Voter)
		return
	}
	p.Approvals[p.Stage] = append(p.Approvals[p.Stage], v.Voter)
	if satisfied(p.Flow.Stages[p.Stage], p.Approvals[p.Stage], domain) {
		p.Stage++
		p.StageStart = v.At
	}
}

// satisfied: enough distinct approvals, and in all-groups mode one from
// each listed group.
func satisfied(st events.Stage, approvals []identity.Principal, domain string) bool {
	if len(approvals) < st.Required {
		return false
	}
	return len(missingGroups(st, approvals, domain)) == 0
}

// missingGroups lists, in all-groups mode, the groups of st that none of
// approvals is from.
func missingGroups(st events.Stage, approvals []identity.Principal, domain string) []string {
	if !st.AllGroups {
		return nil
	}
	var out []string
	for _, g := range st.Groups {
		one := events.Stage{Groups: []string{g}}
		if !slices.ContainsFunc(approvals, func(a identity.Principal) bool { return Eligible(one, a, domain) }) {
			out = append(out, g)
		}
	}
	return out
}

// Escalation is a counted escalated event.
type Escalation struct {
	Seq  uint64
	Data *events.Escalated
}

// Progress replays the flows of a pending (or decided) request.
func (s State) Progress() []Progress {
	if s.Evaluation == nil {
		return nil
	}
	ps := make([]Progress, len(s.Evaluation.Flows))
	for i, f := range s.Evaluation.Flows {
		ps[i] = Progress{
			Flow: f, StageStart: s.EvaluatedAt,
			Approvals: make([][]identity.Principal, len(f.Stages)),
			Escalated: make([]bool, len(f.Stages)),
			Extra:     make([]events.Stage, len(f.Stages)),
		}
	}
	type step struct {
		seq  uint64
		vote *Vote
		esc  *events.Escalated
	}
	var steps []step
	for i := range s.Votes {
		steps = append(steps, step{seq: s.Votes[i].Seq, vote: &s.Votes[i]})
	}
	for _, e := range s.Escalations {
		steps = append(steps, step{seq: e.Seq, esc: e.Data})
	}
	sort.Slice(steps, func(i, j int) bool { return steps[i].seq < steps[j].seq })
	for _, st := range steps {
		for i := range ps {
			p := &ps[i]
			switch {
			case st.vote != nil:
				p.count(*st.vote, s.Domain)
			case st.esc.Flow == p.Flow.Name && st.esc.Stage == p.Stage && !p.Done():
				p.Escalated[p.Stage] = true
				p.Extra[p.Stage] = events.Stage{Groups: st.esc.Groups, Principals: st.esc.Principals}
			}
		}
	}
	return ps
}

// Deadline is when the request expires if nothing decides it first: the
// earliest deadline of the flows' open stages (zero when none is open).
func (s State) Deadline() time.Time {
	var d time.Time
	for _, p := range s.Progress() {
		if t := p.Deadline(); !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	return d
}

// NextDue is the next time something happens by itself to a pending
// request: an escalation or the deadline (zero when nothing will).
func (s State) NextDue() time.Time {
	if !s.Collecting() {
		return time.Time{}
	}
	d := s.Deadline()
	if s.ReviewOpen() {
		return d // a break-glass review does not escalate: it is overdue at its deadline
	}
	for _, p := range s.Progress() {
		if t, ok := p.EscalationDue(); ok && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	return d
}
