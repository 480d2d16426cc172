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
	source []byte
}

// FlowConfig is a flow as written in the flows file.
type FlowConfig struct {
	Description string `json:"description,omitempty"`
	DenyQuorum  int    `json:"deny_quorum,omitempty"`
	// RepeatApprovers lets one approver approve several stages.
	RepeatApprovers bool          `json:"repeat_approvers,omitempty"`
	Stages          []StageConfig `json:"stages"`
}

// StageConfig is one stage of a flow as written in the flows file.
type StageConfig struct {
	Name       string   `json:"name"`
	Groups     []string `json:"groups,omitempty"`
	Principals []string `json:"principals,omitempty"` // "domain/name"
	Required   int      `json:"required"`
	AllGroups  bool     `json:"all_groups,omitempty"` // each listed group must approve too
	Deadline   string   `json:"deadline"`             // Go duration from the stage's start, e.g. "30m"
	Escalate   *struct {
		After      string   `json:"after"` // Go duration from the stage's start
		Groups     []string `json:"groups,omitempty"`
		Principals []string `json:"principals,omitempty"`
	} `json:"escalate,omitempty"`
}

type flowsFile struct {
	Flows map[string]FlowConfig `json:"flows"`
	// Directory, when present, lists each group's members ("domain/name"),
	// so that a flow naming an unknown group, or asking for more approvers
	// than a stage can have, is refused at load.
	Directory map[string][]string `json:"directory,omitempty"`
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
	out := &Flows{flows: map[string]events.Flow{}, digest: events.Digest(b), source: slices.Clone(b)}
	var errs []error
	for name, fc := range f.Flows {
		fl, err := fc.compile(name, f.Directory)
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

func (fc FlowConfig) compile(name string, directory map[string][]string) (events.Flow, error) {
	fl := events.Flow{Name: name, DenyQuorum: fc.DenyQuorum, RepeatApprovers: fc.RepeatApprovers}
	var errs []error
	if !flowName.MatchString(name) {
		errs = append(errs, errors.New("invalid name: lower case letters, digits, '.', '_' and '-'"))
	}
	if fc.DenyQuorum < 0 {
		errs = append(errs, errors.New("deny_quorum must not be negative"))
	}
	if len(fc.Stages) == 0 {
		errs = append(errs, errors.New("no stages"))
	}
	checkGroups := func(stage string, groups []string) {
		for _, g := range groups {
			if !groupName.MatchString(g) {
				errs = append(errs, fmt.Errorf("stage %s: group %q: lower case letters, digits, '.', '_' and '-', optionally as domain/group", stage, g))
			} else if directory != nil {
				if _, ok := directory[g]; !ok {
					errs = append(errs, fmt.Errorf("stage %s: unknown group %q (not in the directory)", stage, g))
				}
			}
		}
	}
	for i, sc := range fc.Stages {
		st := events.Stage{Name: sc.Name, Groups: slices.Clone(sc.Groups), Principals: slices.Clone(sc.Principals), Required: sc.Required, AllGroups: sc.AllGroups}
		if st.Name == "" {
			st.Name = fmt.Sprintf("stage-%d", i+1)
		}
		if len(st.Groups)+len(st.Principals) == 0 {
			errs = append(errs, fmt.Errorf("stage %s: no groups or principals", st.Name))
		}
		if st.Required < 1 {
			errs = append(errs, fmt.Errorf("stage %s: required must be at least 1", st.Name))
		}
		checkGroups(st.Name, st.Groups)
		if st.AllGroups && (len(st.Groups) == 0 || st.Required < len(st.Groups)) {
			errs = append(errs, fmt.Errorf("stage %s: all_groups needs groups, and required of at least one per group (%d)", st.Name, len(st.Groups)))
		}
		if n, ok := stageSize(st, directory); ok && st.Required > n {
			errs = append(errs, fmt.Errorf("stage %s: requires %d approvers but its groups and principals have %d", st.Name, st.Required, n))
		}
		d, err := time.ParseDuration(sc.Deadline)
		if err != nil || d < time.Second {
			errs = append(errs, fmt.Errorf("stage %s: deadline %q must be a duration of at least 1s", st.Name, sc.Deadline))
		}
		st.DeadlineSeconds = int64(d / time.Second)
		if e := sc.Escalate; e != nil {
			after, err := time.ParseDuration(e.After)
			switch {
			case err != nil || after < time.Second:
				errs = append(errs, fmt.Errorf("stage %s: escalate.after %q must be a duration of at least 1s", st.Name, e.After))
			case after >= d:
				errs = append(errs, fmt.Errorf("stage %s: escalate.after %s must come before the deadline %s", st.Name, after, d))
			}
			if len(e.Groups)+len(e.Principals) == 0 {
				errs = append(errs, fmt.Errorf("stage %s: escalate adds no groups or principals", st.Name))
			}
			checkGroups(st.Name, e.Groups)
			st.Escalate = &events.Escalation{AfterSeconds: int64(after / time.Second), Groups: slices.Clone(e.Groups), Principals: slices.Clone(e.Principals)}
			sort.Strings(st.Escalate.Groups)
		}
		sort.Strings(st.Groups)
		fl.Stages = append(fl.Stages, st)
	}
	return fl, errors.Join(errs...)
}

// stageSize counts a stage's possible approvers when a directory is known.
func stageSize(st events.Stage, directory map[string][]string) (int, bool) {
	if len(st.Groups) == 0 {
		return len(st.Principals), true
	}
	if directory == nil {
		return 0, false
	}
	seen := map[string]bool{}
	for _, g := range st.Groups {
		for _, m := range directory[g] {
			seen[m] = true
		}
	}
	for _, p := range st.Principals {
		seen[p] = true
	}
	return len(seen), true
}

// Digest identifies the flows document's exact text.
func (f *Flows) Digest() string { return f.digest }

// Source returns the text the digest covers.
func (f *Flows) Source() []byte { return slices.Clone(f.source) }

// Resolve returns the flows named, as recorded in an evaluation, and the
// request's first deadline: the earliest first-stage deadline of those
// flows. Later stages get their own deadlines as they open.
func (f *Flows) Resolve(names []string, from time.Time) ([]events.Flow, time.Time, error) {
	var out []events.Flow
	var deadline time.Time
	for _, n := range names {
		fl, ok := f.flows[n]
		if !ok {
			return nil, time.Time{}, fmt.Errorf("unknown flow %q", n)
		}
		out = append(out, fl)
		if d := from.Add(time.Duration(fl.Stages[0].DeadlineSeconds) * time.Second); deadline.IsZero() || d.Before(deadline) {
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
