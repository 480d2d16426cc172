package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cedar-policy/cedar-go"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/fifo"
	"github.com/writ-dev/writ/issuer"
)

// Outcome is the result of a decision. The zero value is deny.
type Outcome uint8

// The outcomes.
const (
	OutcomeDeny Outcome = iota
	OutcomeAllow
	OutcomeReview
)

func (o Outcome) String() string {
	switch o {
	case OutcomeAllow:
		return events.OutcomeAllow
	case OutcomeReview:
		return events.OutcomeReview
	}
	return events.OutcomeDeny
}

// Annotations that change what a permit means.
const (
	AnnotationID         = "id"          // the policy's id in decisions
	AnnotationFlow       = "flow"        // approval flow(s) required, comma separated
	AnnotationMaxTTL     = "max_ttl"     // cap on the grant's lifetime, a Go duration
	AnnotationBreakGlass = "break_glass" // "true": allowed at once, reviewed after the fact
)

// ErrLoad wraps every policy load error.
var ErrLoad = errors.New("the policies or flows do not load")

// Set is a compiled policy set.
type Set struct {
	ps     *cedar.PolicySet
	digest string
	source []byte // canonical concatenation, the input of the digest
	meta   map[cedar.PolicyID]meta
}

type meta struct {
	flows      []string
	maxTTL     time.Duration
	breakGlass bool
}

// LoadDir compiles every *.cedar file in dir.
func LoadDir(dir string) (*Set, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.cedar"))
	if err != nil {
		return nil, err
	}
	files := make(map[string][]byte, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrLoad, err)
		}
		files[filepath.Base(p)] = b
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no .cedar files in %s", ErrLoad, dir)
	}
	return Load(files)
}

// Load compiles policy documents, keyed by file name. Policy ids come from
// an @id annotation, or "<file>#<n>".
func Load(files map[string][]byte) (*Set, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	s := &Set{ps: cedar.NewPolicySet(), meta: map[cedar.PolicyID]meta{}}
	var errs []error
	for _, name := range names {
		s.source = fmt.Appendf(s.source, "-- %s\n%s\n", name, files[name])
		list, err := cedar.NewPolicyListFromBytes(name, files[name])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		for i, p := range list {
			ann := p.Annotations()
			id := cedar.PolicyID(fmt.Sprintf("%s#%d", name, i))
			if v, ok := ann[AnnotationID]; ok && v != "" {
				id = cedar.PolicyID(v)
			}
			m, err := parseMeta(ann)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: policy %s: %w", name, id, err))
				continue
			}
			if p.Effect() == cedar.Forbid && (len(m.flows) > 0 || m.maxTTL > 0 || m.breakGlass) {
				errs = append(errs, fmt.Errorf("%s: policy %s: @flow, @max_ttl and @break_glass only mean something on a permit", name, id))
			}
			if m.breakGlass && (len(m.flows) == 0 || m.maxTTL == 0) {
				errs = append(errs, fmt.Errorf("%s: policy %s: a @break_glass permit needs the @flow of its after-the-fact review and a @max_ttl", name, id))
			}
			if !s.ps.Add(id, p) {
				errs = append(errs, fmt.Errorf("%s: duplicate policy id %q", name, id))
			}
			s.meta[id] = m
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLoad, err)
	}
	s.digest = events.Digest(s.source)
	return s, nil
}

func parseMeta(ann cedar.Annotations) (meta, error) {
	var m meta
	if v, ok := ann[AnnotationFlow]; ok {
		for f := range strings.SplitSeq(string(v), ",") {
			if f = strings.TrimSpace(f); f != "" {
				m.flows = append(m.flows, f)
			}
		}
		if len(m.flows) == 0 {
			return m, errors.New("@flow names no flow")
		}
	}
	if v, ok := ann[AnnotationMaxTTL]; ok {
		d, err := time.ParseDuration(string(v))
		if err != nil || d < issuer.MinTTL {
			return m, fmt.Errorf("@max_ttl(%q) is not a duration of at least %s", v, issuer.MinTTL)
		}
		m.maxTTL = d
	}
	if v, ok := ann[AnnotationBreakGlass]; ok {
		if v != "true" && v != "false" {
			return m, fmt.Errorf("@break_glass(%q) must be \"true\" or \"false\"", v)
		}
		m.breakGlass = v == "true"
	}
	return m, nil
}

// Digest identifies the policy set's exact text.
func (s *Set) Digest() string { return s.digest }

// Source returns the text the digest covers.
func (s *Set) Source() []byte { return slices.Clone(s.source) }

// FlowNames lists every flow any policy refers to.
func (s *Set) FlowNames() []string {
	var out []string
	for _, m := range s.meta {
		for _, f := range m.flows {
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Input is what a decision is made on.
type Input struct {
	Principal identity.Principal
	Action    string
	Domain    string // the target domain, which owns the resource
	Resource  string // the resource's path within its domain; "" for the domain itself
	Context   Context
}

// Context is the request's context as Cedar sees it.
type Context struct {
	Urgency string
	Reason  string
	Ticket  string
	Origin  string // the requester's domain
	TTL     time.Duration
	Params  map[string]string
	Time    time.Time
	// ResourceState is the resource's entry in the resource-state bucket
	// (package state), as the requester's moment saw it. Cedar sees it as
	// resource.state, a record of strings, empty when nil; it is kept here,
	// with the other facts of the moment, so that Record keeps it.
	ResourceState map[string]string
	// DomainState is the target domain's own entry in that bucket; Cedar
	// sees it as context.domain_state, a record of strings.
	DomainState map[string]string
}

// Record returns the context as recorded in the evaluated event.
func (c Context) Record() map[string]any {
	params := map[string]any{}
	for k, v := range c.Params {
		params[k] = v
	}
	r := map[string]any{
		"urgency":     c.Urgency,
		"reason":      c.Reason,
		"ticket":      c.Ticket,
		"origin":      c.Origin,
		"ttl_seconds": int64(c.TTL / time.Second),
		"params":      params,
		"now":         c.Time.UTC().Format(time.RFC3339Nano),
	}
	// Absent means empty: records of requests that met no state stay as
	// they were before state existed.
	if len(c.ResourceState) > 0 {
		r["resource_state"] = recordOf(c.ResourceState)
	}
	if len(c.DomainState) > 0 {
		r["domain_state"] = recordOf(c.DomainState)
	}
	return r
}

func recordOf(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// emptyRecord is shared by every empty map: most requests carry no
// params and meet no state, and a record costs a sort and a hash to make.
var emptyRecord = cedar.NewRecord(nil)

func cedarRecord(m map[string]string) cedar.Record {
	if len(m) == 0 {
		return emptyRecord
	}
	out := make(cedar.RecordMap, len(m))
	for k, v := range m {
		out[cedar.String(k)] = cedar.String(v)
	}
	return cedar.NewRecord(out)
}

func (c Context) cedar() cedar.Record {
	t := c.Time.UTC()
	return cedar.NewRecord(cedar.RecordMap{
		"urgency":      cedar.String(c.Urgency),
		"reason":       cedar.String(c.Reason),
		"ticket":       cedar.String(c.Ticket),
		"origin":       cedar.String(c.Origin),
		"ttl_seconds":  cedar.Long(c.TTL / time.Second),
		"params":       cedarRecord(c.Params),
		"now":          cedar.NewDatetime(t),
		"hour_utc":     cedar.Long(t.Hour()),
		"domain_state": cedarRecord(c.DomainState),
	})
}

// Decision is the outcome of Decide. The zero value is a deny.
type Decision struct {
	Outcome    Outcome
	Reasons    []string // ids of the determining policies
	Errors     []string // evaluation errors; any error makes the outcome deny
	Flows      []string // approval flows required (review)
	MaxTTL     time.Duration
	BreakGlass bool
}

// Entity ids as the policies see them.
func principalUID(p identity.Principal) cedar.EntityUID {
	return cedar.NewEntityUID("User", cedar.String(p.ID()))
}

func groupUID(domain, g string) cedar.EntityUID {
	return cedar.NewEntityUID("Group", cedar.String(domain+"/"+g))
}

// principals holds the entities of principals seen lately: a requester
// sends many requests, and its entities depend only on who it is.
var principals = fifo.New[string, cedar.EntityMap](4096)

// principalEntities is a principal as the policies see it: a User whose
// parents are its groups, with attributes domain and name. The map is
// shared: read it, do not add to it.
func principalEntities(p identity.Principal) (cedar.EntityUID, cedar.EntityMap) {
	uid := principalUID(p)
	key := p.Domain + "\x00" + p.Name + "\x00" + strings.Join(p.Groups, "\x00")
	if m, ok := principals.Get(key); ok {
		return uid, m
	}
	entities := cedar.EntityMap{}
	parents := make([]cedar.EntityUID, 0, len(p.Groups))
	for _, g := range p.Groups {
		gid := groupUID(p.Domain, g)
		parents = append(parents, gid)
		entities[gid] = cedar.Entity{UID: gid}
	}
	entities[uid] = cedar.Entity{
		UID:     uid,
		Parents: cedar.NewEntityUIDSet(parents...),
		Attributes: cedar.NewRecord(cedar.RecordMap{
			"domain": cedar.String(p.Domain),
			"name":   cedar.String(p.Name),
		}),
	}
	principals.Put(key, entities)
	return uid, entities
}

// resources holds the entities of resources without state seen lately:
// an agent acts on the same few resources again and again.
var resources = fifo.New[string, cedar.Entity](4096)

// resourceEntity is a resource as the policies see it: its domain, path
// and state. One without state is remembered. Path "" is the domain
// itself, Resource::"<domain>" (what a domain's own state entry is set
// on): no resource path spells that id.
func resourceEntity(domain, path string, state map[string]string) cedar.Entity {
	id := domain + "/" + path
	if path == "" {
		id = domain
	}
	if len(state) == 0 {
		if e, ok := resources.Get(id); ok {
			return e
		}
	}
	e := cedar.Entity{
		UID: cedar.NewEntityUID("Resource", cedar.String(id)),
		Attributes: cedar.NewRecord(cedar.RecordMap{
			"domain": cedar.String(domain),
			"path":   cedar.String(path),
			"state":  cedarRecord(state),
		}),
	}
	if len(state) == 0 {
		resources.Put(id, e)
	}
	return e
}

// requestEntities are the entities of one decision: the principal's,
// shared, and the resource, its own.
type requestEntities struct {
	principal cedar.EntityMap
	resource  cedar.Entity
}

func (e *requestEntities) Get(uid cedar.EntityUID) (cedar.Entity, bool) {
	if uid == e.resource.UID {
		return e.resource, true
	}
	return e.principal.Get(uid)
}

// Decide evaluates the input. It never fails: an evaluation error denies.
func (s *Set) Decide(in Input) Decision {
	principal, shared := principalEntities(in.Principal)
	entities := &requestEntities{principal: shared, resource: resourceEntity(in.Domain, in.Resource, in.Context.ResourceState)}
	ok, diag := s.ps.IsAuthorized(entities, cedar.Request{
		Principal: principal,
		Action:    cedar.NewEntityUID("Action", cedar.String(in.Action)),
		Resource:  entities.resource.UID,
		Context:   in.Context.cedar(),
	})
	var d Decision
	for _, r := range diag.Reasons {
		d.Reasons = append(d.Reasons, string(r.PolicyID))
	}
	for _, e := range diag.Errors {
		d.Errors = append(d.Errors, e.String())
	}
	if ok != cedar.Allow || len(d.Errors) > 0 {
		// Fail closed: a policy that could not be evaluated might have been a forbid.
		return Decision{Reasons: d.Reasons, Errors: d.Errors}
	}
	d.Outcome = OutcomeAllow
	for _, id := range d.Reasons {
		m := s.meta[cedar.PolicyID(id)]
		for _, f := range m.flows {
			if !slices.Contains(d.Flows, f) {
				d.Flows = append(d.Flows, f)
			}
		}
		if m.maxTTL > 0 && (d.MaxTTL == 0 || m.maxTTL < d.MaxTTL) {
			d.MaxTTL = m.maxTTL
		}
		d.BreakGlass = d.BreakGlass || m.breakGlass
	}
	sort.Strings(d.Flows)
	// Break-glass allows at once; its flows are the review after the fact.
	if len(d.Flows) > 0 && !d.BreakGlass {
		d.Outcome = OutcomeReview
	}
	return d
}
