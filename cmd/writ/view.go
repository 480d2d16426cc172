package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/request"
)

// requestView is everything a person needs to judge a request, in one
// shape for the text views and the JSON output of 'approvals list',
// 'approvals watch' and 'request show'. Requested holds exactly the fields
// of the requested event that its digest covers, so an approver sees what
// the digest in their vote binds them to.
type requestView struct {
	ID            string          `json:"request_id"`
	Domain        string          `json:"domain"`
	Status        string          `json:"status"`
	Requester     string          `json:"requester,omitempty"`
	Origin        string          `json:"origin_domain,omitempty"`
	Requested     *requestedView  `json:"requested,omitempty"`
	RequestDigest string          `json:"request_digest,omitempty"`
	RequestedAt   time.Time       `json:"requested_at,omitzero"`
	Evaluation    *evaluationView `json:"evaluation,omitempty"`
	Flows         []flowView      `json:"flows,omitempty"`
	Deadline      time.Time       `json:"deadline,omitzero"`
	NextDue       time.Time       `json:"next_due,omitzero"`
	Votes         []voteView      `json:"votes,omitempty"`
	Refusals      []refusalView   `json:"refusals,omitempty"`
	Rejection     *refusalView    `json:"rejection,omitempty"`
	DecidedAt     time.Time       `json:"decided_at,omitzero"`
	Grant         *grantView      `json:"grant,omitempty"`
	RedeemedAt    time.Time       `json:"redeemed_at,omitzero"`
	Revocation    *revocationView `json:"revocation,omitempty"`
	Review        *reviewView     `json:"review,omitempty"` // a break-glass grant's after-the-fact review
	Alerts        []alertView     `json:"alerts,omitempty"`
	Outcome       string          `json:"outcome,omitempty"` // why it ended, in a sentence
}

type alertView struct {
	Alert  string `json:"alert"`
	Reason string `json:"reason"`
}

// reviewView is where a break-glass grant's after-the-fact review stands.
type reviewView struct {
	State    string    `json:"state"`             // open, approved, denied or overdue
	Deadline time.Time `json:"deadline,omitzero"` // while open
	By       []string  `json:"by,omitempty"`      // who approved, or denied
	Reason   string    `json:"reason,omitempty"`  // a denial's
}

// requestedView mirrors events.Requested without the chain link, the
// requester's JWT and the key the grant is sealed to.
type requestedView struct {
	Requester  string            `json:"requester"`
	Action     string            `json:"action"`
	Resource   string            `json:"resource"`
	Params     map[string]string `json:"params,omitempty"`
	Reason     string            `json:"reason,omitempty"`
	Ticket     string            `json:"ticket,omitempty"`
	Urgency    string            `json:"urgency"`
	TTLSeconds int64             `json:"ttl_seconds,omitempty"`
}

type evaluationView struct {
	Outcome       string    `json:"outcome"`
	Reasons       []string  `json:"reasons,omitempty"`
	Errors        []string  `json:"errors,omitempty"`
	BreakGlass    bool      `json:"break_glass,omitempty"`
	MaxTTLSeconds int64     `json:"max_ttl_seconds,omitempty"`
	At            time.Time `json:"at,omitzero"`
}

type flowView struct {
	Name       string      `json:"name"`
	Summary    string      `json:"summary"` // e.g. "lead-then-security: stage 1/2 'lead', 0 of 1"
	Stage      int         `json:"stage"`   // the open stage, from 1; len(stages)+1 once done
	Done       bool        `json:"done"`
	Denials    []string    `json:"denials,omitempty"`
	DenyQuorum int         `json:"deny_quorum"`
	Stages     []stageView `json:"stages"`
}

type stageView struct {
	Name string `json:"name"`
	// State is done, open or waiting while the request collects votes;
	// once it ended, the stage it ended in says how (denied, expired,
	// revoked, overdue, …) and the stages after it are "not reached".
	State       string    `json:"state"`
	Groups      []string  `json:"groups,omitempty"`
	Principals  []string  `json:"principals,omitempty"`
	Required    int       `json:"required"`
	AllGroups   bool      `json:"all_groups,omitempty"`
	Missing     []string  `json:"missing_groups,omitempty"` // all-groups mode: the open stage's groups none has approved for yet
	Approvals   []string  `json:"approvals,omitempty"`
	DeadlineSec int64     `json:"deadline_seconds"`
	Deadline    time.Time `json:"deadline,omitzero"`     // for the open stage
	EscalatesAt time.Time `json:"escalates_at,omitzero"` // for the open stage, if still to come
	Escalated   bool      `json:"escalated,omitempty"`
	Added       []string  `json:"added_approvers,omitempty"` // by escalation
}

type voteView struct {
	Voter    string    `json:"voter"`
	Decision string    `json:"decision"`
	Reason   string    `json:"reason,omitempty"`
	Seq      uint64    `json:"seq"`
	At       time.Time `json:"at,omitzero"`
}

type refusalView struct {
	Seq    uint64 `json:"seq,omitempty"` // the refused message
	Kind   string `json:"kind,omitempty"`
	Signer string `json:"signer,omitempty"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

type grantView struct {
	TokenHash  string    `json:"token_hash"`
	Holder     string    `json:"holder"`
	NotBefore  time.Time `json:"not_before"`
	ExpiresAt  time.Time `json:"expires_at"`
	BreakGlass bool      `json:"break_glass,omitempty"`
}

type revocationView struct {
	By     string `json:"by"`
	Reason string `json:"reason"`
}

// viewOf describes a request. records may be nil (the refusals then come
// from the state alone).
func viewOf(s request.State, records []events.Record) requestView {
	v := requestView{
		ID: s.ID, Domain: s.Domain, Status: s.Status.String(),
		RequestDigest: s.RequestDigest, RequestedAt: s.RequestedAt, DecidedAt: s.DecidedAt, RedeemedAt: s.RedeemedAt,
	}
	if s.Request != nil {
		r := s.Request
		v.Requester, v.Origin = s.Requester.ID(), s.Requester.Domain
		v.Requested = &requestedView{
			Requester: r.Requester.ID(), Action: r.Action, Resource: r.Resource, Params: r.Params,
			Reason: r.Reason, Ticket: r.Ticket, Urgency: r.Urgency, TTLSeconds: r.TTLSeconds,
		}
	}
	if e := s.Evaluation; e != nil {
		v.Evaluation = &evaluationView{
			Outcome: e.Outcome, Reasons: e.Reasons, Errors: e.Errors, BreakGlass: e.BreakGlass,
			MaxTTLSeconds: e.MaxTTLSeconds, At: s.EvaluatedAt,
		}
	}
	for _, p := range s.Progress() {
		v.Flows = append(v.Flows, flowOf(p, s))
	}
	if s.Collecting() {
		v.Deadline, v.NextDue = s.Deadline(), s.NextDue()
	}
	if e := s.Evaluation; e != nil && e.BreakGlass && len(e.Flows) > 0 {
		v.Review = reviewOf(s)
	}
	for _, a := range s.Alerts {
		v.Alerts = append(v.Alerts, alertView{Alert: a.Alert, Reason: a.Reason})
	}
	for _, vo := range s.Votes {
		d := events.DecisionDeny
		if vo.Approve {
			d = events.DecisionApprove
		}
		v.Votes = append(v.Votes, voteView{Voter: vo.Voter.ID(), Decision: d, Reason: vo.Reason, Seq: vo.Seq, At: vo.At})
	}
	for _, rec := range records {
		if d, ok := rec.Data.(*events.Refused); ok && rec.Valid() {
			v.Refusals = append(v.Refusals, refusalView{Seq: d.RefSeq, Kind: d.RefKind, Signer: d.RefSigner, Code: d.Code, Reason: d.Reason})
		}
	}
	if len(records) == 0 {
		for seq, code := range s.Answered {
			v.Refusals = append(v.Refusals, refusalView{Seq: seq, Code: code})
		}
		sort.Slice(v.Refusals, func(i, j int) bool { return v.Refusals[i].Seq < v.Refusals[j].Seq })
	}
	if s.Rejection != nil {
		v.Rejection = &refusalView{Seq: s.Rejection.RefSeq, Kind: events.KindRequested.String(), Code: s.Rejection.Code, Reason: s.Rejection.Reason}
	}
	if g := s.Grant; g != nil {
		v.Grant = &grantView{TokenHash: g.TokenHash, Holder: g.Holder, NotBefore: g.NotBefore, ExpiresAt: g.ExpiresAt, BreakGlass: g.BreakGlass}
	}
	if r := s.Revocation; r != nil {
		v.Revocation = &revocationView{By: r.By.ID(), Reason: r.Reason}
	}
	if s.Status.IsTerminal() || s.Status == request.StatusRevoked {
		v.Outcome = describeOutcome(s).Reason
	}
	return v
}

func reviewOf(s request.State) *reviewView {
	r := &reviewView{State: "open"}
	switch rv := s.Review; {
	case rv != nil && rv.Denied():
		r.State, r.By, r.Reason = "denied", refIDs(rv.By), rv.Reason
	case rv != nil:
		r.State, r.By = "approved", refIDs(rv.Approvers)
	case s.ReviewOverdue:
		r.State = "overdue"
	default:
		r.Deadline = s.Deadline()
	}
	return r
}

func refIDs(rs []events.PrincipalRef) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID())
	}
	return out
}

// isReview reports whether the view is of a break-glass review still
// open: the grant is made, the reviewers answer after the fact.
func (v requestView) isReview() bool { return v.Review != nil && v.Review.State == "open" }

// flowOf describes a flow of the request s.
func flowOf(p request.Progress, s request.State) flowView {
	open := s.Collecting()
	f := flowView{
		Name: p.Flow.Name, Summary: progressSummary(p, s.Domain), Stage: p.Stage + 1, Done: p.Done(),
		DenyQuorum: max(p.Flow.DenyQuorum, 1), Denials: ids(p.Denials),
	}
	for i, st := range p.Flow.Stages {
		sv := stageView{
			Name: st.Name, Groups: st.Groups, Principals: st.Principals, Required: st.Required,
			AllGroups: st.AllGroups, Approvals: ids(p.Approvals[i]), DeadlineSec: st.DeadlineSeconds,
			Escalated: p.Escalated[i], Added: append(slices.Clone(p.Extra[i].Groups), p.Extra[i].Principals...),
		}
		switch {
		case i < p.Stage:
			sv.State = "done"
		case i == p.Stage && open:
			sv.State = "open"
			sv.Missing = p.MissingGroups(s.Domain)
			sv.Deadline = p.Deadline()
			if due, ok := p.EscalationDue(); ok {
				sv.EscalatesAt = due
			}
		case i == p.Stage:
			sv.State = endedIn(s)
		case open:
			sv.State = "waiting"
		default:
			sv.State = "not reached"
		}
		f.Stages = append(f.Stages, sv)
	}
	return f
}

// endedIn is what the stage a request ended in shows: how it ended.
func endedIn(s request.State) string {
	switch {
	case s.ReviewOverdue:
		return "overdue"
	case s.Status == request.StatusNone:
		return "closed"
	}
	return s.Status.String()
}

// progressSummary says where a flow of a request of domain stands, e.g.
// "lead-then-security: stage 1/2 'lead', 0 of 1 from team-leads". A stage
// in all-groups mode names the groups it still waits for: it may have its
// number of approvals and still wait.
func progressSummary(p request.Progress, domain string) string {
	n := len(p.Flow.Stages)
	if p.Done() {
		return fmt.Sprintf("%s: all %d stage(s) approved", p.Flow.Name, n)
	}
	st := p.Flow.Stages[p.Stage]
	who := append(slices.Clone(st.Groups), st.Principals...)
	who = append(who, p.Extra[p.Stage].Groups...)
	who = append(who, p.Extra[p.Stage].Principals...)
	s := fmt.Sprintf("%s: stage %d/%d '%s', %d of %d from %s", p.Flow.Name, p.Stage+1, n, st.Name,
		len(p.Approvals[p.Stage]), st.Required, strings.Join(who, "|"))
	if st.AllGroups {
		s += " (each group"
		if missing := p.MissingGroups(domain); len(missing) > 0 {
			s += "; still none from " + strings.Join(missing, ", ")
		}
		s += ")"
	}
	if len(p.Denials) > 0 {
		s += fmt.Sprintf(", %d denial(s) of %d to deny", len(p.Denials), max(p.Flow.DenyQuorum, 1))
	}
	return s
}

// flowSummary says where every flow of a request stands.
func flowSummary(s request.State) string {
	var parts []string
	for _, p := range s.Progress() {
		parts = append(parts, progressSummary(p, s.Domain))
	}
	return strings.Join(parts, "; ")
}

func ids(ps []identity.Principal) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.ID())
	}
	return out
}

// approvedBy lists who approved so far, in vote order.
func (v requestView) approvedBy() []string {
	var out []string
	for _, vo := range v.Votes {
		if vo.Decision == events.DecisionApprove {
			out = append(out, vo.Voter)
		}
	}
	return out
}

// countdown renders the time left until t, "overdue" once it has passed.
func countdown(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now)
	if d <= 0 {
		return "overdue"
	}
	if d >= time.Minute {
		d = d.Round(time.Second)
	} else {
		d = d.Round(100 * time.Millisecond)
	}
	return d.String()
}

// writeFacts prints what an approver judges: the requested event's fields
// and its digest, the flows and the deadline. indent prefixes each line.
func writeFacts(w io.Writer, v requestView, now time.Time, indent string) {
	line := func(k, val string) { fmt.Fprintf(w, "%s%-11s %s\n", indent, k+":", val) }
	if r := v.Requested; r != nil {
		line("requester", fmt.Sprintf("%s (origin domain %s)", r.Requester, v.Origin))
		line("action", r.Action)
		line("resource", v.Domain+"/"+r.Resource)
		if len(r.Params) > 0 {
			line("params", events.FormatParams(r.Params))
		}
		if r.Reason != "" {
			line("reason", fmt.Sprintf("%q", r.Reason))
		}
		if r.Ticket != "" {
			line("ticket", strconv.Quote(r.Ticket))
		}
		line("urgency", r.Urgency)
		if r.TTLSeconds > 0 {
			line("ttl", (time.Duration(r.TTLSeconds) * time.Second).String())
		}
	}
	if r := v.Review; r != nil {
		line("review", reviewSummary(v))
	}
	for _, f := range v.Flows {
		line("flow", f.Summary)
	}
	if !v.Deadline.IsZero() {
		key := "deadline"
		if v.isReview() {
			key = "review by"
		}
		line(key, fmt.Sprintf("%s (in %s)", v.Deadline.Local().Format(time.TimeOnly), countdown(v.Deadline, now)))
	}
	if by := v.approvedBy(); len(by) > 0 {
		line("approved by", strings.Join(by, ", "))
	} else if v.Status == request.StatusPending.String() || v.isReview() {
		line("approved by", "nobody yet")
	}
	line("digest", v.RequestDigest)
}

// reviewSummary says where a break-glass request's review stands, in a
// line.
func reviewSummary(v requestView) string {
	r := v.Review
	switch r.State {
	case "open":
		return "BREAK-GLASS, granted at once (" + v.Status + "); the after-the-fact review is open: approve, or deny to revoke the grant"
	case "denied":
		s := "denied by " + strings.Join(r.By, ", ")
		if r.Reason != "" {
			s += fmt.Sprintf(" %q", r.Reason)
		}
		switch v.Status {
		case request.StatusRevoked.String():
			return s + "; the grant is revoked"
		case request.StatusRefused.String():
			return s + "; no grant was issued"
		}
		return s + "; the grant is being revoked"
	case "approved":
		return "approved by " + strings.Join(r.By, ", ")
	}
	return "OVERDUE: nobody reviewed it in time"
}

// writeShow prints a request's full picture, for 'request show'.
func writeShow(w io.Writer, v requestView, now time.Time) {
	fmt.Fprintf(w, "request %s in %s: %s\n", v.ID, v.Domain, strings.ToUpper(v.Status))
	writeFacts(w, v, now, "  ")
	if !v.RequestedAt.IsZero() {
		fmt.Fprintf(w, "  %-11s %s\n", "requested:", v.RequestedAt.Local().Format(time.RFC3339))
	}
	if e := v.Evaluation; e != nil {
		s := e.Outcome
		if len(e.Reasons) > 0 {
			s += " by " + strings.Join(e.Reasons, ", ")
		}
		if len(e.Errors) > 0 {
			s += "; errors: " + strings.Join(e.Errors, "; ")
		}
		if e.BreakGlass {
			s += "; BREAK-GLASS"
		}
		if e.MaxTTLSeconds > 0 {
			s += fmt.Sprintf("; grant at most %s", time.Duration(e.MaxTTLSeconds)*time.Second)
		}
		fmt.Fprintf(w, "  %-11s %s\n", "evaluated:", s)
	}
	for _, f := range v.Flows {
		fmt.Fprintf(w, "  flow %s (a deny counts at %d):\n", f.Name, f.DenyQuorum)
		for i, st := range f.Stages {
			who := strings.Join(append(slices.Clone(st.Groups), st.Principals...), "|")
			mode := ""
			if st.AllGroups {
				mode = ", each group"
			}
			if len(st.Missing) > 0 {
				mode += "; still none from " + strings.Join(st.Missing, ", ")
			}
			fmt.Fprintf(w, "    %d. %-12s %-7s %d of %d from %s%s, deadline %s after it opens\n", i+1, st.Name, st.State,
				len(st.Approvals), st.Required, who, mode, time.Duration(st.DeadlineSec)*time.Second)
			if len(st.Approvals) > 0 {
				fmt.Fprintf(w, "       approved by %s\n", strings.Join(st.Approvals, ", "))
			}
			if st.Escalated {
				fmt.Fprintf(w, "       escalated: added %s\n", strings.Join(st.Added, ", "))
			}
			if !st.Deadline.IsZero() {
				fmt.Fprintf(w, "       deadline %s (in %s)\n", st.Deadline.Local().Format(time.TimeOnly), countdown(st.Deadline, now))
			}
			if !st.EscalatesAt.IsZero() {
				fmt.Fprintf(w, "       escalates at %s (in %s)\n", st.EscalatesAt.Local().Format(time.TimeOnly), countdown(st.EscalatesAt, now))
			}
		}
		if len(f.Denials) > 0 {
			fmt.Fprintf(w, "    denied by %s\n", strings.Join(f.Denials, ", "))
		}
	}
	for _, vo := range v.Votes {
		s := fmt.Sprintf("  vote #%d: %s %s", vo.Seq, vo.Voter, vo.Decision)
		if vo.Reason != "" {
			s += fmt.Sprintf(" %q", vo.Reason)
		}
		fmt.Fprintln(w, s)
	}
	for _, r := range v.Refusals {
		fmt.Fprintf(w, "  refused #%d %s %s: %s %s\n", r.Seq, r.Kind, r.Signer, r.Code, r.Reason)
	}
	if r := v.Rejection; r != nil {
		fmt.Fprintf(w, "  rejected:   %s: %s\n", r.Code, r.Reason)
	}
	if g := v.Grant; g != nil {
		bg := ""
		if g.BreakGlass {
			bg = " BREAK-GLASS"
		}
		fmt.Fprintf(w, "  grant:      %s, valid %s to %s%s\n", g.TokenHash, g.NotBefore.Local().Format(time.RFC3339), g.ExpiresAt.Local().Format(time.RFC3339), bg)
	}
	if !v.RedeemedAt.IsZero() {
		fmt.Fprintf(w, "  redeemed:   %s\n", v.RedeemedAt.Local().Format(time.RFC3339))
	}
	if r := v.Revocation; r != nil {
		fmt.Fprintf(w, "  revoked:    by %s: %q\n", r.By, r.Reason)
	}
	for _, a := range v.Alerts {
		fmt.Fprintf(w, "  alert:      %s: %s\n", strings.ToUpper(a.Alert), a.Reason)
	}
	if v.Outcome != "" {
		fmt.Fprintf(w, "  outcome:    %s\n", v.Outcome)
	}
}

// viewsOf describes each request.
func viewsOf(rs []*client.Request) []requestView {
	out := make([]requestView, 0, len(rs))
	for _, r := range rs {
		out = append(out, viewOf(r.State, r.Records))
	}
	return out
}
