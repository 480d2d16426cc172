package main

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/request"
)

// replayFilter says which requests 'writ audit replay' shows: every set
// field must hold. The domain and the request id are not here: they choose
// what is read at all.
type replayFilter struct {
	since, until time.Time // made in [since, until)
	requester    string    // "domain/name", or a name in any domain
	approver     string    // someone with a verified vote on record, counted or not
	action       string
	resource     string // exact, "prefix/*" for everything under prefix, or a path.Match glob
	outcomes     []request.Status
}

// replayFlags are the filters as given on the command line.
type replayFlags struct {
	since, until, requester, approver, action, resource, outcome string
}

func (fl replayFlags) filter(now time.Time) (replayFilter, error) {
	f := replayFilter{requester: fl.requester, approver: fl.approver, action: fl.action, resource: fl.resource}
	var errs []error
	var err error
	if f.since, err = parseWhen(fl.since, now); err != nil {
		errs = append(errs, fmt.Errorf("--since: %w", err))
	}
	if f.until, err = parseWhen(fl.until, now); err != nil {
		errs = append(errs, fmt.Errorf("--until: %w", err))
	}
	if !f.since.IsZero() && !f.until.IsZero() && !f.since.Before(f.until) {
		errs = append(errs, errors.New("--since must come before --until"))
	}
	if _, err := path.Match(f.resource, ""); err != nil {
		errs = append(errs, fmt.Errorf("--resource %q: %w", f.resource, err))
	}
	for o := range strings.SplitSeq(fl.outcome, ",") {
		if o = strings.TrimSpace(o); o == "" {
			continue
		}
		s, err := request.ParseStatus(o)
		if err != nil {
			errs = append(errs, fmt.Errorf("--outcome %q: one of %s", o, statusNames()))
		}
		f.outcomes = append(f.outcomes, s)
	}
	return f, errors.Join(errs...)
}

// statusNames lists the statuses a request can end in, or stand at.
func statusNames() string {
	var names []string
	for s := request.StatusNone + 1; s < 64; s++ {
		if _, err := request.ParseStatus(s.String()); err != nil {
			break
		}
		names = append(names, s.String())
	}
	return strings.Join(names, ", ")
}

// parseWhen reads an RFC 3339 time, a date (midnight, local time), or a
// duration back from now; "" is no bound.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, time.Local); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time (2006-01-02T15:04:05Z), a date, or a duration ago (90m, 2h)", s)
}

// all reports whether the filter keeps every request.
func (f replayFilter) all() bool {
	return f.since.IsZero() && f.until.IsZero() && f.requester == "" && f.approver == "" &&
		f.action == "" && f.resource == "" && len(f.outcomes) == 0
}

// early decides on a request's requested event alone, so that the
// histories of requests that cannot match are never read. It says yes
// whenever it cannot be sure: an event the fold would not take as the
// request (unverified, or chained to something) leaves the decision to
// the history.
func (f replayFilter) early(rec events.Record) bool {
	d, ok := rec.Data.(*events.Requested)
	if !ok || !rec.Valid() || d.Prev != "" {
		return true
	}
	return f.made(rec.Principal, d, rec.Envelope.Time)
}

// keeps decides on a request's whole history.
func (f replayFilter) keeps(r *client.Request) bool {
	s := r.State
	var who *identity.Principal
	if s.Request != nil {
		who = &s.Requester
	}
	if !f.made(who, s.Request, madeAt(r)) {
		return false
	}
	if len(f.outcomes) > 0 && !slices.Contains(f.outcomes, s.Status) {
		return false
	}
	if f.approver == "" {
		return true
	}
	for _, rec := range r.Records {
		if rec.Kind == events.KindVoted && rec.Principal != nil && samePrincipal(f.approver, *rec.Principal) {
			return true
		}
	}
	return false
}

// made holds when the request (nil when the history has none) was made
// by the requester, for the action and resource, in the time range.
func (f replayFilter) made(who *identity.Principal, d *events.Requested, at time.Time) bool {
	if !f.since.IsZero() && at.Before(f.since) || !f.until.IsZero() && !at.Before(f.until) {
		return false
	}
	if f.requester == "" && f.action == "" && f.resource == "" {
		return true
	}
	if who == nil || d == nil {
		return false
	}
	return (f.requester == "" || samePrincipal(f.requester, *who)) &&
		(f.action == "" || f.action == d.Action) &&
		matchResource(f.resource, d.Resource)
}

// madeAt is when a request was made, as its history says; for a history
// without a request the fold takes, when the stream stored its first
// request message.
func madeAt(r *client.Request) time.Time {
	if !r.State.RequestedAt.IsZero() {
		return r.State.RequestedAt
	}
	for _, rec := range r.Records {
		if rec.Kind == events.KindRequested {
			return rec.Time
		}
	}
	return time.Time{}
}

// samePrincipal: want is "domain/name", or a bare name in any domain.
func samePrincipal(want string, p identity.Principal) bool {
	if strings.Contains(want, "/") {
		return want == p.ID()
	}
	return want == p.Name
}

// matchResource: "" matches all; "a/b/*" matches everything under a/b;
// another pattern with *, ? or [ is a path.Match glob (one segment per
// *); anything else is the exact path.
func matchResource(pattern, resource string) bool {
	switch {
	case pattern == "":
		return true
	case strings.HasSuffix(pattern, "/*") && !strings.ContainsAny(pattern[:len(pattern)-2], `*?[\`):
		return strings.HasPrefix(resource, pattern[:len(pattern)-1])
	case strings.ContainsAny(pattern, `*?[\`):
		ok, _ := path.Match(pattern, resource)
		return ok
	}
	return pattern == resource
}
