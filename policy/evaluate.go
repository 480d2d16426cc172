package policy

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/writ-dev/writ/events"
)

// Evaluate decides on a request and returns the evaluated event the policy
// component records (without its prev). stateErr, when not nil, says the
// resource state could not be read: the request is denied, with the error
// recorded. The same function re-evaluates recorded decisions in audits,
// so a recorded outcome and its re-computation cannot drift apart.
func Evaluate(s *Set, f *Flows, in Input, stateErr error) *events.Evaluated {
	var d Decision // deny
	if stateErr != nil {
		d.Errors = []string{stateErr.Error()}
	} else {
		d = s.Decide(in)
	}
	p := in.Principal
	ev := &events.Evaluated{
		Reasons:      append([]string{}, d.Reasons...),
		Errors:       d.Errors,
		PolicyDigest: s.Digest(),
		FlowsDigest:  f.Digest(),
		Principal: events.EvaluatedPrincipal{
			Domain: p.Domain, Name: p.Name, Key: p.Key, Groups: p.Groups,
		},
		Context:       in.Context.Record(),
		MaxTTLSeconds: int64(d.MaxTTL / time.Second),
		BreakGlass:    d.BreakGlass,
	}
	if d.Outcome == OutcomeReview || (d.BreakGlass && d.Outcome == OutcomeAllow) {
		flows, deadline, err := f.Resolve(d.Flows, in.Context.Time)
		if err != nil {
			d.Outcome = OutcomeDeny
			ev.Errors = append(ev.Errors, err.Error())
		} else {
			// Under break-glass, granted at once: the flows are the
			// mandatory review after the fact.
			ev.Flows, ev.ExpiresAt = flows, &deadline
		}
	}
	ev.Outcome = d.Outcome.String()
	return ev
}

// ErrContext says a recorded context cannot be read back.
var ErrContext = errors.New("recorded context is not readable")

// ContextFromRecord reads back a context recorded by Context.Record.
func ContextFromRecord(r map[string]any) (Context, error) {
	var c Context
	str := func(k string) string { s, _ := r[k].(string); return s }
	c.Urgency, c.Reason, c.Ticket, c.Origin = str("urgency"), str("reason"), str("ticket"), str("origin")
	switch v := r["ttl_seconds"].(type) {
	case float64:
		c.TTL = time.Duration(v) * time.Second
	case int64:
		c.TTL = time.Duration(v) * time.Second
	case nil:
	default:
		return c, fmt.Errorf("%w: ttl_seconds %v", ErrContext, v)
	}
	now, err := time.Parse(time.RFC3339Nano, str("now"))
	if err != nil {
		return c, fmt.Errorf("%w: now: %v", ErrContext, err)
	}
	// Recorded in UTC, a time must still be one RFC 3339 can spell: year
	// 0000 at a positive offset is year -1 in UTC.
	if y := now.UTC().Year(); y < 0 || y > 9999 {
		return c, fmt.Errorf("%w: now: %s is outside the years 0000 to 9999 in UTC", ErrContext, str("now"))
	}
	c.Time = now
	var errs []error
	stringsOf := func(k string) map[string]string {
		raw, ok := r[k].(map[string]any)
		if !ok {
			if r[k] != nil {
				errs = append(errs, fmt.Errorf("%w: %s is not a record", ErrContext, k))
			}
			return nil
		}
		out := make(map[string]string, len(raw))
		for key, v := range raw {
			switch v := v.(type) {
			case string:
				out[key] = v
			default:
				errs = append(errs, fmt.Errorf("%w: %s.%s is not a string", ErrContext, k, key))
			}
		}
		return out
	}
	c.Params = stringsOf("params")
	if len(c.Params) == 0 {
		c.Params = nil
	}
	c.ResourceState, c.DomainState = stringsOf("resource_state"), stringsOf("domain_state")
	return c, errors.Join(errs...)
}

// SameContext reports whether two recorded contexts say the same, after
// the JSON round trip a recorded one has been through.
func SameContext(a, b map[string]any) bool {
	ca, errA := ContextFromRecord(a)
	cb, errB := ContextFromRecord(b)
	if errA != nil || errB != nil {
		return false
	}
	return ca.Urgency == cb.Urgency && ca.Reason == cb.Reason && ca.Ticket == cb.Ticket && ca.Origin == cb.Origin &&
		ca.TTL == cb.TTL && ca.Time.Equal(cb.Time) && maps.Equal(ca.Params, cb.Params) &&
		maps.Equal(ca.ResourceState, cb.ResourceState) && maps.Equal(ca.DomainState, cb.DomainState)
}

// FromSource compiles a policy set back from its Source, as recorded in
// the trail, and checks that it is the set with that digest.
func FromSource(src []byte, digest string) (*Set, error) {
	files := map[string][]byte{}
	rest := string(src)
	for rest != "" {
		head, body, ok := strings.Cut(rest, "\n")
		name, isHead := strings.CutPrefix(head, "-- ")
		if !ok || !isHead || name == "" {
			return nil, fmt.Errorf("%w: recorded source is not a list of files", ErrLoad)
		}
		// A file ends where the next header line begins.
		end := strings.Index(body, "\n-- ")
		if end < 0 {
			end = len(body) - 1
		}
		if end < 0 || body[end] != '\n' {
			return nil, fmt.Errorf("%w: recorded source is cut short", ErrLoad)
		}
		files[name] = []byte(body[:end])
		rest = body[end+1:]
	}
	s, err := Load(files)
	if err != nil {
		return nil, err
	}
	if s.Digest() != digest {
		return nil, fmt.Errorf("%w: recorded source has digest %s, not %s", ErrLoad, s.Digest(), digest)
	}
	return s, nil
}
