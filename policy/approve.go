package policy

import (
	"time"

	"github.com/cedar-policy/cedar-go"

	"github.com/writ-dev/writ/identity"
)

// ApproveInput is an approver asking to answer a request's open stage.
type ApproveInput struct {
	Approver  identity.Principal
	Domain    string // the request's domain
	RequestID string
	Requester identity.Principal
	Action    string // the requested action
	Resource  string // the requested resource's path
	Urgency   string
	Flow      string
	Stage     string
	Time      time.Time
}

// MayApprove decides whether the approver may answer: Action::"approve" on
// Request::"<domain>/<request id>", whose attributes are requester
// ("domain/name"), requester_domain, domain, action, resource (and path,
// the same), urgency, flow and stage; the context has now and hour_utc. Being in the stage's
// groups is checked elsewhere; self-approval is refused whatever this
// says. An evaluation error denies.
func (s *Set) MayApprove(in ApproveInput) Decision {
	principal, shared := principalEntities(in.Approver)
	req := cedar.NewEntityUID("Request", cedar.String(in.Domain+"/"+in.RequestID))
	entities := &requestEntities{principal: shared, resource: cedar.Entity{UID: req, Attributes: cedar.NewRecord(cedar.RecordMap{
		"requester":        cedar.String(in.Requester.ID()),
		"requester_domain": cedar.String(in.Requester.Domain),
		"domain":           cedar.String(in.Domain),
		"action":           cedar.String(in.Action),
		"resource":         cedar.String(in.Resource),
		"urgency":          cedar.String(in.Urgency),
		"flow":             cedar.String(in.Flow),
		"stage":            cedar.String(in.Stage),
		// Resource-style attributes, so that policies written for
		// resources (resource.path, resource.state) read the requested
		// resource rather than fail on a request: a failure denies.
		"path":  cedar.String(in.Resource),
		"state": emptyRecord,
	})}}
	t := in.Time.UTC()
	ok, diag := s.ps.IsAuthorized(entities, cedar.Request{
		Principal: principal,
		Action:    cedar.NewEntityUID("Action", "approve"),
		Resource:  req,
		Context: cedar.NewRecord(cedar.RecordMap{
			"now": cedar.NewDatetime(t), "hour_utc": cedar.Long(t.Hour()),
		}),
	})
	var d Decision
	for _, r := range diag.Reasons {
		d.Reasons = append(d.Reasons, string(r.PolicyID))
	}
	for _, e := range diag.Errors {
		d.Errors = append(d.Errors, e.String())
	}
	if ok == cedar.Allow && len(d.Errors) == 0 {
		d.Outcome = OutcomeAllow
	}
	return d
}
