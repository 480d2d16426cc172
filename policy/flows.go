package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"time"

	"github.com/writ-dev/writ/events"
)

// Flows are the approval flows a policy can require, by name.
type Flows struct {
	flows  map[string]events.Flow
	digest string
}

// FlowConfig is a flow as written in the flows file.
type FlowConfig struct {
	Description string        `json:"description,omitempty"`
	DenyQuorum  int           `json:"deny_quorum,omitempty"`
	Stages      []StageConfig `json:"stages"`
}

// StageConfig is one stage of a flow as written in the flows file.
type StageConfig struct {
	Name       string   `json:"name"`
	Groups     []string `json:"groups,omitempty"`
	Principals []string `json:"principals,omitempty"` // "domain/name"
	Required   int      `json:"required"`
	Deadline   string   `json:"deadline"` // Go duration, e.g. "30m"
}

type flowsFile struct {
	Flows map[string]FlowConfig `json:"flows"`
}

var (
	flowName  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	groupName = regexp.MustCompile(`^([a-z0-9][a-z0-9-]{0,62}/)?[a-z0-9][a-z0-9._-]{0,62}$`)
)

// LoadFlowsFile reads and checks a flows file.
func LoadFlowsFile(path string) (*Flows, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLoad, err)
	}
	return ParseFlows(b)
}

// ParseFlows parses and checks a flows document.
func ParseFlows(b []byte) (*Flows, error) {
	var f flowsFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: flows: %v", ErrLoad, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: flows: unexpected data after the flows object", ErrLoad)
	}
	out := &Flows{flows: map[string]events.Flow{}, digest: events.Digest(b)}
	var errs []error
	for name, fc := range f.Flows {
		fl, err := fc.compile(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("flow %q: %w", name, err))
			continue
		}
		out.flows[name] = fl
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: flows: %w", ErrLoad, err)
	}
	return out, nil
}

func (fc FlowConfig) compile(name string) (events.Flow, error) {
	fl := events.Flow{Name: name, DenyQuorum: fc.DenyQuorum}
	var errs []error
	if !flowName.MatchString(name) {
		errs = append(errs, errors.New("invalid name: lower case letters, digits, '.', '_' and '-'"))
	}
	if fc.DenyQuorum < 0 {
		errs = append(errs, errors.New("deny_quorum must not be negative"))
	}
	switch len(fc.Stages) {
	case 0:
		errs = append(errs, errors.New("no stages"))
	case 1:
	default:
		// Ordered multi-stage flows need per-stage vote assignment; until
		// then a flow is one stage, and more is refused rather than half-run.
		errs = append(errs, errors.New("only single-stage flows are supported in this version"))
	}
	for i, sc := range fc.Stages {
		st := events.Stage{Name: sc.Name, Groups: slices.Clone(sc.Groups), Principals: slices.Clone(sc.Principals), Required: sc.Required}
		if st.Name == "" {
			st.Name = fmt.Sprintf("stage-%d", i+1)
		}
		if len(st.Groups)+len(st.Principals) == 0 {
			errs = append(errs, fmt.Errorf("stage %s: no groups or principals", st.Name))
		}
		if st.Required < 1 {
			errs = append(errs, fmt.Errorf("stage %s: required must be at least 1", st.Name))
		}
		if len(st.Groups) == 0 && st.Required > len(st.Principals) {
			errs = append(errs, fmt.Errorf("stage %s: requires %d approvers but names %d", st.Name, st.Required, len(st.Principals)))
		}
		d, err := time.ParseDuration(sc.Deadline)
		if err != nil || d < time.Second {
			errs = append(errs, fmt.Errorf("stage %s: deadline %q must be a duration of at least 1s", st.Name, sc.Deadline))
		}
		st.DeadlineSeconds = int64(d / time.Second)
		for _, g := range st.Groups {
			if !groupName.MatchString(g) {
				errs = append(errs, fmt.Errorf("stage %s: group %q: lower case letters, digits, '.', '_' and '-', optionally as domain/group", st.Name, g))
			}
		}
		sort.Strings(st.Groups)
		fl.Stages = append(fl.Stages, st)
	}
	return fl, errors.Join(errs...)
}

// Digest identifies the flows document's exact text.
func (f *Flows) Digest() string { return f.digest }

// Resolve returns the flows named, as recorded in an evaluation, and the
// deadline of the request: the earliest final deadline of those flows.
func (f *Flows) Resolve(names []string, from time.Time) ([]events.Flow, time.Time, error) {
	var out []events.Flow
	var deadline time.Time
	for _, n := range names {
		fl, ok := f.flows[n]
		if !ok {
			return nil, time.Time{}, fmt.Errorf("policy: unknown flow %q", n)
		}
		out = append(out, fl)
		var total time.Duration
		for _, st := range fl.Stages {
			total += time.Duration(st.DeadlineSeconds) * time.Second
		}
		if d := from.Add(total); deadline.IsZero() || d.Before(deadline) {
			deadline = d
		}
	}
	return out, deadline, nil
}

// Check reports flows the policy set refers to but the flows file lacks.
func (f *Flows) Check(s *Set) error {
	var errs []error
	for _, n := range s.FlowNames() {
		if _, ok := f.flows[n]; !ok {
			errs = append(errs, fmt.Errorf("a policy requires flow %q, which the flows file does not define", n))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrLoad, err)
	}
	return nil
}
