package policy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/policy"
)

func sampleFlows(t testing.TB) (*policy.Flows, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "flows.json"))
	require.NoError(t, err)
	f, err := policy.ParseFlows(b)
	require.NoError(t, err)
	return f, b
}

func TestParseFlowsSample(t *testing.T) {
	f, b := sampleFlows(t)
	assert.Equal(t, events.Digest(b), f.Digest())

	flows, deadline, err := f.Resolve([]string{"two-sre-leads"}, t0)
	require.NoError(t, err)
	assert.Equal(t, []events.Flow{{
		Name: "two-sre-leads",
		Stages: []events.Stage{{
			Name: "leads", Groups: []string{"sre-leads"}, Required: 2, DeadlineSeconds: 1800,
		}},
	}}, flows)
	assert.Equal(t, t0.Add(30*time.Minute), deadline)

	require.NoError(t, f.Check(sample(t)), "the sample policies name only the sample flows")

	fromFile, err := policy.LoadFlowsFile(filepath.Join("testdata", "flows.json"))
	require.NoError(t, err)
	assert.Equal(t, f.Digest(), fromFile.Digest())
	_, err = policy.LoadFlowsFile(filepath.Join(t.TempDir(), "missing.json"))
	assert.ErrorIs(t, err, policy.ErrLoad)
}

func TestParseFlowsRefuses(t *testing.T) {
	stage := `{"name": "s", "groups": ["g"], "required": 1, "deadline": "1m"}`
	doc := func(name, flow string) string { return `{"flows": {"` + name + `": ` + flow + `}}` }
	tests := []struct {
		name string
		doc  string
		want string // a fragment of the error
	}{
		{"not JSON", `{"flows":`, "flows"},
		{"flows of the wrong type", `{"flows": []}`, "flows"},
		{"unknown top-level field", `{"flows": {}, "version": 2}`, "version"},
		{"unknown flow field", doc("f", `{"stages": [`+stage+`], "approvers": 2}`), "approvers"},
		{"unknown stage field", doc("f", `{"stages": [{"name": "s", "groups": ["g"], "required": 1, "deadline": "1m", "timeout": "1m"}]}`), "timeout"},
		{"no stages", doc("f", `{"stages": []}`), "no stages"},
		{"stages missing", doc("f", `{}`), "no stages"},
		{"escalation after the deadline", doc("f", `{"stages": [{"groups": ["g"], "required": 1, "deadline": "1m", "escalate": {"after": "2m", "groups": ["h"]}}]}`), "must come before the deadline"},
		{"escalation to nobody", doc("f", `{"stages": [{"groups": ["g"], "required": 1, "deadline": "1m", "escalate": {"after": "30s"}}]}`), "adds no groups or principals"},
		{"zero escalation delay", doc("f", `{"stages": [{"groups": ["g"], "required": 1, "deadline": "1m", "escalate": {"after": "0s", "groups": ["h"]}}]}`), "escalate.after"},
		{"all groups with too few required", doc("f", `{"stages": [{"groups": ["g", "h"], "all_groups": true, "required": 1, "deadline": "1m"}]}`), "all_groups needs"},
		{"unknown group in the directory", `{"directory": {"g": ["acme/a"]}, "flows": {"f": {"stages": [{"groups": ["nope"], "required": 1, "deadline": "1m"}]}}}`, "unknown group"},
		{"more required than the group has", `{"directory": {"g": ["acme/a", "acme/b"]}, "flows": {"f": {"stages": [{"groups": ["g"], "required": 3, "deadline": "1m"}]}}}`, "requires 3 approvers but its groups and principals have 2"},
		{"required 0", doc("f", `{"stages": [{"groups": ["g"], "required": 0, "deadline": "1m"}]}`), "required must be at least 1"},
		{"required missing", doc("f", `{"stages": [{"groups": ["g"], "deadline": "1m"}]}`), "required must be at least 1"},
		{"negative required", doc("f", `{"stages": [{"groups": ["g"], "required": -2, "deadline": "1m"}]}`), "required must be at least 1"},
		{"deadline 0s", doc("f", `{"stages": [{"groups": ["g"], "required": 1, "deadline": "0s"}]}`), "deadline"},
		{"deadline below a second", doc("f", `{"stages": [{"groups": ["g"], "required": 1, "deadline": "999ms"}]}`), "deadline"},
		{"negative deadline", doc("f", `{"stages": [{"groups": ["g"], "required": 1, "deadline": "-1h"}]}`), "deadline"},
		{"deadline missing", doc("f", `{"stages": [{"groups": ["g"], "required": 1}]}`), "deadline"},
		{"deadline in days", doc("f", `{"stages": [{"groups": ["g"], "required": 1, "deadline": "1d"}]}`), "deadline"},
		{"nobody may approve", doc("f", `{"stages": [{"required": 1, "deadline": "1m"}]}`), "no groups or principals"},
		{"more approvals than named approvers", doc("f", `{"stages": [{"principals": ["acme/alice"], "required": 2, "deadline": "1m"}]}`), "requires 2 approvers but its groups and principals have 1"},
		{"negative deny quorum", doc("f", `{"deny_quorum": -1, "stages": [`+stage+`]}`), "deny_quorum"},
		{"upper-case flow name", doc("Two-Leads", `{"stages": [`+stage+`]}`), "invalid name"},
		{"flow name with a space", doc("two leads", `{"stages": [`+stage+`]}`), "invalid name"},
		{"empty flow name", doc("", `{"stages": [`+stage+`]}`), "invalid name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := policy.ParseFlows([]byte(tt.doc))
			require.Error(t, err)
			assert.Nil(t, f)
			assert.ErrorIs(t, err, policy.ErrLoad)
			assert.ErrorContains(t, err, tt.want)
		})
	}
}

func TestParseFlowsReportsEveryError(t *testing.T) {
	_, err := policy.ParseFlows([]byte(`{"flows": {
		"a": {"stages": []},
		"b": {"stages": [{"groups": ["g"], "required": 0, "deadline": "0s"}]}
	}}`))
	require.ErrorIs(t, err, policy.ErrLoad)
	for _, frag := range []string{`flow "a"`, "no stages", `flow "b"`, "required must be at least 1", "deadline"} {
		assert.ErrorContains(t, err, frag)
	}
}

func TestParseFlowsTrailingData(t *testing.T) {
	_, b := sampleFlows(t)
	doc := append(append([]byte{}, b...), []byte(`{"flows": {"one-lead": {"stages": [{"groups": ["sre-leads"], "required": 1, "deadline": "5m"}]}}}`)...)
	_, err := policy.ParseFlows(doc)
	assert.ErrorIs(t, err, policy.ErrLoad)
}

func TestParseFlowsNormalises(t *testing.T) {
	f, err := policy.ParseFlows([]byte(`{"flows": {
		"named": {"deny_quorum": 2, "stages": [{"groups": ["zeta", "alpha"], "principals": ["acme/bob", "acme/alice"], "required": 3, "deadline": "90s"}]},
		"empty": {"stages": [{"principals": ["acme/alice"], "required": 1, "deadline": "1.5s"}]}
	}}`))
	require.NoError(t, err)
	flows, _, err := f.Resolve([]string{"named", "empty"}, t0)
	require.NoError(t, err)
	require.Len(t, flows, 2)
	assert.Equal(t, events.Flow{Name: "named", DenyQuorum: 2, Stages: []events.Stage{{
		Name: "stage-1", Groups: []string{"alpha", "zeta"}, Principals: []string{"acme/bob", "acme/alice"}, Required: 3, DeadlineSeconds: 90,
	}}}, flows[0], "an unnamed stage gets a name; groups are sorted; with groups, required may exceed the named principals")
	assert.Equal(t, int64(1), flows[1].Stages[0].DeadlineSeconds, "deadlines are whole seconds")
}

func TestResolve(t *testing.T) {
	f, err := policy.ParseFlows([]byte(`{"flows": {
		"slow": {"stages": [{"groups": ["g"], "required": 1, "deadline": "2h"}]},
		"fast": {"stages": [{"groups": ["g"], "required": 1, "deadline": "10m"}]}
	}}`))
	require.NoError(t, err)
	tests := []struct {
		name     string
		names    []string
		deadline time.Time
		flows    []string
	}{
		{"one flow", []string{"slow"}, t0.Add(2 * time.Hour), []string{"slow"}},
		{"the earliest deadline of several", []string{"slow", "fast"}, t0.Add(10 * time.Minute), []string{"slow", "fast"}},
		{"in any order", []string{"fast", "slow"}, t0.Add(10 * time.Minute), []string{"fast", "slow"}},
		{"no flow, no deadline", nil, time.Time{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			flows, deadline, err := f.Resolve(tt.names, t0)
			require.NoError(t, err)
			assert.Equal(t, tt.deadline, deadline)
			var names []string
			for _, fl := range flows {
				names = append(names, fl.Name)
			}
			assert.Equal(t, tt.flows, names)
		})
	}
	_, _, err = f.Resolve([]string{"fast", "ghost"}, t0)
	assert.ErrorContains(t, err, `"ghost"`)
}

func TestCheck(t *testing.T) {
	f, _ := sampleFlows(t)
	s := sample(t, `@id("needs-security") @flow("security,two-sre-leads") permit (principal, action == Action::"x", resource);`)
	err := f.Check(s)
	require.ErrorIs(t, err, policy.ErrLoad)
	assert.ErrorContains(t, err, `"security"`)
	assert.NotContains(t, err.Error(), `"two-sre-leads"`, "only the missing flow is named")

	empty, err := policy.ParseFlows([]byte(`{"flows": {}}`))
	require.NoError(t, err)
	assert.ErrorIs(t, empty.Check(sample(t)), policy.ErrLoad, "the sample needs two-sre-leads")

	none, err := policy.Load(map[string][]byte{"a.cedar": []byte(`permit (principal, action, resource);`)})
	require.NoError(t, err)
	assert.NoError(t, empty.Check(none))
}

// FuzzParseFlows checks that arbitrary flows documents never panic the
// parser, and that every flow it accepts can be run: one stage that someone
// may answer, at least one approval and a deadline of at least a second.
func FuzzParseFlows(f *testing.F) {
	_, b := sampleFlows(f)
	f.Add(b)
	f.Add([]byte(`{"flows": {"f": {"stages": [{"groups": ["g"], "required": 0, "deadline": "0s"}]}}}`))
	f.Add([]byte(`{"flows": {"f": {"deny_quorum": 3, "stages": [{"principals": ["acme/a", "acme/b"], "required": 2, "deadline": "1h30m"}]}}}`))
	f.Add([]byte(`{"flows": null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		fl, err := policy.ParseFlows(doc)
		if err != nil {
			if fl != nil {
				t.Fatal("flows with an error")
			}
			return
		}
		if fl.Digest() != events.Digest(doc) {
			t.Fatal("digest of another text")
		}
		s, err := policy.Load(map[string][]byte{"a.cedar": []byte(`permit (principal, action, resource);`)})
		if err != nil {
			t.Fatal(err)
		}
		if err := fl.Check(s); err != nil {
			t.Fatalf("a set requiring no flow: %v", err)
		}
		// Resolve every flow the document names.
		var names []string
		for _, line := range strings.Split(string(doc), `"`) {
			if _, _, err := fl.Resolve([]string{line}, t0); err == nil {
				names = append(names, line)
			}
		}
		flows, deadline, err := fl.Resolve(names, t0)
		if err != nil {
			t.Fatal(err)
		}
		for _, flow := range flows {
			if len(flow.Stages) != 1 || flow.DenyQuorum < 0 {
				t.Fatalf("flow %q accepted with %d stages, deny quorum %d", flow.Name, len(flow.Stages), flow.DenyQuorum)
			}
			st := flow.Stages[0]
			if st.Required < 1 || st.DeadlineSeconds < 1 || len(st.Groups)+len(st.Principals) == 0 {
				t.Fatalf("flow %q accepted with stage %+v", flow.Name, st)
			}
			if len(st.Groups) == 0 && st.Required > len(st.Principals) {
				t.Fatalf("flow %q can never be approved: %+v", flow.Name, st)
			}
		}
		if len(flows) > 0 && !deadline.After(t0) {
			t.Fatalf("deadline %s not after the request", deadline)
		}
	})
}
