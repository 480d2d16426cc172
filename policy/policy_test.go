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
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/policy"
)

var t0 = time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)

// sample loads testdata/acme.cedar: the policies `writ init` writes for
// domain acme (config's test checks the two stay the same).
func sample(t testing.TB, extra ...string) *policy.Set {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "acme.cedar"))
	require.NoError(t, err)
	files := map[string][]byte{"main.cedar": b}
	for i, e := range extra {
		files[string(rune('a'+i))+"-extra.cedar"] = []byte(e)
	}
	s, err := policy.Load(files)
	require.NoError(t, err)
	return s
}

func who(domain, name string, groups ...string) identity.Principal {
	return identity.Principal{Domain: domain, Name: name, Key: "U" + strings.Repeat("A", 55), Groups: groups}
}

var (
	bot   = who("acme", "deploy-bot", "bots")
	carol = who("acme", "carol", "developers")
	alice = who("acme", "alice", "sre-leads")
	admin = who("acme", "root", "admins")
)

func input(p identity.Principal, action, resource string) policy.Input {
	return policy.Input{
		Principal: p, Action: action, Domain: "acme", Resource: resource,
		Context: policy.Context{Urgency: "normal", Origin: p.Domain, Time: t0, Params: map[string]string{"replica": "2"}},
	}
}

func TestDecideSample(t *testing.T) {
	s := sample(t)
	tests := []struct {
		name string
		in   policy.Input
		want policy.Decision
	}{
		{
			name: "a bot deploys to staging at once, for ten minutes at most",
			in:   input(bot, "deploy", "staging/web"),
			want: policy.Decision{Outcome: policy.OutcomeAllow, Reasons: []string{"bots-deploy-staging"}, MaxTTL: 10 * time.Minute},
		},
		{
			name: "a developer restarts production after review",
			in:   input(carol, "restart", "prod/api"),
			want: policy.Decision{Outcome: policy.OutcomeReview, Reasons: []string{"developers-restart-prod"}, Flows: []string{"two-sre-leads"}, MaxTTL: 30 * time.Minute},
		},
		{
			name: "a developer does anything on dev, without a cap",
			in:   input(carol, "drop-database", "dev/db"),
			want: policy.Decision{Outcome: policy.OutcomeAllow, Reasons: []string{"developers-own-dev"}},
		},
		{
			name: "an SRE lead reads production logs",
			in:   input(alice, "read-logs", "prod/api"),
			want: policy.Decision{Outcome: policy.OutcomeAllow, Reasons: []string{"sre-leads-read-prod-logs"}},
		},
		{
			name: "nobody drops a production database",
			in:   input(carol, "drop-database", "prod/db"),
			want: policy.Decision{Outcome: policy.OutcomeDeny, Reasons: []string{"no-prod-database-drop"}},
		},
		{
			name: "no permit: deny without reasons",
			in:   input(carol, "deploy", "staging/web"),
			want: policy.Decision{Outcome: policy.OutcomeDeny},
		},
		{
			name: "a bot deploys to production: no permit",
			in:   input(bot, "deploy", "prod/web"),
			want: policy.Decision{Outcome: policy.OutcomeDeny},
		},
		{
			name: "a bot of another domain is not acme's bot",
			in:   input(who("other", "deploy-bot", "bots"), "deploy", "staging/web"),
			want: policy.Decision{Outcome: policy.OutcomeDeny},
		},
		{
			name: "the sample looks at the path only, not the resource domain",
			in: func() policy.Input {
				in := input(carol, "restart", "dev/api")
				in.Domain = "other"
				return in
			}(),
			want: policy.Decision{Outcome: policy.OutcomeAllow, Reasons: []string{"developers-own-dev"}},
		},
		{
			name: "path prefixes are matched whole",
			in:   input(bot, "deploy", "staging-old/web"),
			want: policy.Decision{Outcome: policy.OutcomeDeny},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := s.Decide(tt.in)
			assert.Equal(t, tt.want.Outcome, d.Outcome, "outcome %s", d.Outcome)
			assert.ElementsMatch(t, tt.want.Reasons, d.Reasons)
			assert.Equal(t, tt.want.Flows, d.Flows)
			assert.Equal(t, tt.want.MaxTTL, d.MaxTTL)
			assert.Equal(t, tt.want.BreakGlass, d.BreakGlass)
			assert.Empty(t, d.Errors)
		})
	}
}

// The "resource of another domain" case above shows that the sample's
// resource conditions look at the path only; Decide itself keeps the domain
// in the resource's id and attributes, which this policy checks.
func TestDecideResourceDomain(t *testing.T) {
	s, err := policy.Load(map[string][]byte{"p.cedar": []byte(`
@id("acme-only")
permit (principal, action, resource == Resource::"acme/dev/api")
when { resource.domain == "acme" && resource.path == "dev/api" && principal.domain == "acme" && principal.name == "carol" };`)})
	require.NoError(t, err)
	in := input(carol, "restart", "dev/api")
	assert.Equal(t, policy.OutcomeAllow, s.Decide(in).Outcome)
	in.Domain = "other"
	assert.Equal(t, policy.OutcomeDeny, s.Decide(in).Outcome)
}

// Who may set resource state in the sample: owners (SRE leads for
// production, developers for dev/*) and tooling (bots), never oneself on
// call; the domain's own entry is Resource::"acme".
func TestDecideSetStateSample(t *testing.T) {
	s := sample(t)
	set := func(p identity.Principal, path string, attrs map[string]string) policy.Decision {
		return s.Decide(policy.Input{Principal: p, Action: "set-state", Domain: "acme", Resource: path,
			Context: policy.Context{Urgency: "normal", Origin: p.Domain, Time: t0, Params: attrs}})
	}
	onCall := func(name string) map[string]string { return map[string]string{"on_call": name} }
	incident := map[string]string{"incident_active": "true"}
	for _, tc := range []struct {
		name  string
		p     identity.Principal
		path  string
		attrs map[string]string
		allow bool
	}{
		{"an SRE lead says who is on call", alice, "prod/db", onCall("bob"), true},
		{"an SRE lead declares an incident for the domain", alice, "", incident, true},
		{"a bot, for the paging tooling, sets the on-call", bot, "prod/db", onCall("alice"), true},
		{"a bot opens an incident", bot, "", incident, true},
		{"an SRE lead deletes an entry", alice, "prod/db", nil, true},
		{"nobody puts themselves on call", alice, "prod/db", onCall("alice"), false},
		{"a developer says nothing about production", carol, "prod/db", onCall("bob"), false},
		{"a developer declares no incident", carol, "", incident, false},
		{"a developer owns dev resources", carol, "dev/db", map[string]string{"owner": "carol"}, true},
		{"someone outside the groups", admin, "prod/db", onCall("bob"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := set(tc.p, tc.path, tc.attrs)
			assert.Equal(t, tc.allow, d.Outcome == policy.OutcomeAllow, "%+v", d)
			assert.Empty(t, d.Errors)
		})
	}
	// The domain's own entry is the domain itself, with path "".
	d, err := policy.Load(map[string][]byte{"p.cedar": []byte(`
permit (principal, action == Action::"set-state", resource == Resource::"acme") when { resource.path == "" };`)})
	require.NoError(t, err)
	assert.Equal(t, policy.OutcomeAllow, d.Decide(policy.Input{Principal: carol, Action: "set-state", Domain: "acme", Context: policy.Context{Time: t0}}).Outcome)
	assert.Equal(t, policy.OutcomeDeny, d.Decide(policy.Input{Principal: carol, Action: "set-state", Domain: "acme", Resource: "x", Context: policy.Context{Time: t0}}).Outcome)
}

func TestDecideCombines(t *testing.T) {
	s := sample(t, `
@id("admins-all")
@max_ttl("1h")
permit (principal in Group::"acme/admins", action, resource);

@id("admins-prod-review")
@flow("security, two-sre-leads")
@max_ttl("5m")
permit (principal in Group::"acme/admins", action, resource)
when { resource.path like "prod/*" };

@id("critical-break-glass")
@break_glass("true")
@flow("two-sre-leads")
@max_ttl("10m")
permit (principal in Group::"acme/admins", action == Action::"restart", resource)
when { context.urgency == "critical" };
`)
	tests := []struct {
		name string
		in   policy.Input
		want policy.Decision
	}{
		{
			name: "a forbid wins over a permit",
			in:   input(admin, "drop-database", "prod/db"),
			want: policy.Decision{Outcome: policy.OutcomeDeny, Reasons: []string{"no-prod-database-drop"}},
		},
		{
			name: "the shortest cap and every flow of the determining permits",
			in:   input(admin, "restart", "prod/db"),
			want: policy.Decision{Outcome: policy.OutcomeReview, Reasons: []string{"admins-all", "admins-prod-review"}, Flows: []string{"security", "two-sre-leads"}, MaxTTL: 5 * time.Minute},
		},
		{
			name: "a permit without a cap does not lift another's cap",
			in:   input(admin, "restart", "dev/db"),
			want: policy.Decision{Outcome: policy.OutcomeAllow, Reasons: []string{"admins-all"}, MaxTTL: time.Hour},
		},
		{
			name: "break glass on a critical request",
			in: func() policy.Input {
				in := input(admin, "restart", "dev/db")
				in.Context.Urgency = "critical"
				return in
			}(),
			// Allowed at once, capped by the break-glass permit; the flow is
			// the review after the fact.
			want: policy.Decision{Outcome: policy.OutcomeAllow, Reasons: []string{"admins-all", "critical-break-glass"}, Flows: []string{"two-sre-leads"}, MaxTTL: 10 * time.Minute, BreakGlass: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := s.Decide(tt.in)
			assert.Equal(t, tt.want.Outcome, d.Outcome, "outcome %s", d.Outcome)
			assert.ElementsMatch(t, tt.want.Reasons, d.Reasons)
			assert.Equal(t, tt.want.Flows, d.Flows)
			assert.Equal(t, tt.want.MaxTTL, d.MaxTTL)
			assert.Equal(t, tt.want.BreakGlass, d.BreakGlass)
		})
	}
}

func TestDecideContext(t *testing.T) {
	s, err := policy.Load(map[string][]byte{"ctx.cedar": []byte(`
@id("short-ticketed-business-hours")
permit (principal, action == Action::"restart", resource)
when {
  context.ticket like "OPS-*" && context.ttl_seconds <= 600 && context.hour_utc >= 8 && context.hour_utc < 18 &&
  context.origin == "acme" && context.params.replica == "2" && context.reason != "" &&
  context.now > datetime("2025-01-01T00:00:00Z")
};`)})
	require.NoError(t, err)
	base := func() policy.Input {
		in := input(carol, "restart", "prod/db")
		in.Context.Ticket, in.Context.Reason, in.Context.TTL = "OPS-1", "stuck", 10*time.Minute
		return in
	}
	tests := []struct {
		name string
		edit func(in *policy.Input)
		want policy.Outcome
	}{
		{"all conditions hold", func(*policy.Input) {}, policy.OutcomeAllow},
		{"no ticket", func(in *policy.Input) { in.Context.Ticket = "" }, policy.OutcomeDeny},
		{"ttl too long", func(in *policy.Input) { in.Context.TTL = 11 * time.Minute }, policy.OutcomeDeny},
		{"at night", func(in *policy.Input) { in.Context.Time = t0.Add(12 * time.Hour) }, policy.OutcomeDeny},
		{"local time is converted to UTC", func(in *policy.Input) { in.Context.Time = t0.In(time.FixedZone("X", -10*3600)) }, policy.OutcomeAllow},
		{"another origin", func(in *policy.Input) { in.Context.Origin = "other" }, policy.OutcomeDeny},
		{"another parameter", func(in *policy.Input) { in.Context.Params["replica"] = "3" }, policy.OutcomeDeny},
		{"no reason", func(in *policy.Input) { in.Context.Reason = "" }, policy.OutcomeDeny},
		{"before 2025", func(in *policy.Input) { in.Context.Time = time.Date(2024, 6, 1, 9, 0, 0, 0, time.UTC) }, policy.OutcomeDeny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base()
			tt.edit(&in)
			d := s.Decide(in)
			assert.Equal(t, tt.want, d.Outcome)
			assert.Empty(t, d.Errors)
		})
	}
}

func TestDecideErrorDenies(t *testing.T) {
	s := sample(t, `
@id("needs-missing-param")
@max_ttl("1h")
permit (principal in Group::"acme/developers", action == Action::"deploy", resource)
when { context.params.missing == "x" };

@id("developers-deploy")
@flow("two-sre-leads")
permit (principal in Group::"acme/developers", action == Action::"deploy", resource);
`)
	d := s.Decide(input(carol, "deploy", "staging/web"))
	assert.Equal(t, policy.OutcomeDeny, d.Outcome, "a policy that could not be evaluated might have been a forbid")
	require.Len(t, d.Errors, 1)
	assert.Contains(t, d.Errors[0], "needs-missing-param")
	assert.Contains(t, d.Errors[0], "missing")
	assert.Empty(t, d.Flows, "a deny requires no flow")
	assert.Zero(t, d.MaxTTL)
	assert.False(t, d.BreakGlass)

	// With the parameter present, the same request goes to review.
	in := input(carol, "deploy", "staging/web")
	in.Context.Params["missing"] = "x"
	d = s.Decide(in)
	assert.Empty(t, d.Errors)
	assert.Equal(t, policy.OutcomeReview, d.Outcome)
	assert.Equal(t, time.Hour, d.MaxTTL)

	// An error in a forbid denies too, even when a permit holds.
	s = sample(t, `
@id("forbid-broken")
forbid (principal, action, resource) when { principal.nickname == "x" };
`)
	d = s.Decide(input(bot, "deploy", "staging/web"))
	assert.Equal(t, policy.OutcomeDeny, d.Outcome)
	assert.NotEmpty(t, d.Errors)
}

func TestDecisionZeroValueIsDeny(t *testing.T) {
	var d policy.Decision
	assert.Equal(t, policy.OutcomeDeny, d.Outcome)
	assert.Equal(t, events.OutcomeDeny, policy.OutcomeDeny.String())
	assert.Equal(t, events.OutcomeAllow, policy.OutcomeAllow.String())
	assert.Equal(t, events.OutcomeReview, policy.OutcomeReview.String())
	assert.Equal(t, events.OutcomeDeny, policy.Outcome(9).String(), "an unknown outcome reads as deny")
}

func TestLoadRefuses(t *testing.T) {
	permit := `permit (principal, action, resource);`
	tests := []struct {
		name  string
		files map[string]string
		want  string // a fragment of the error
	}{
		{"max_ttl below 10s", map[string]string{"a.cedar": `@max_ttl("5s") ` + permit}, `@max_ttl("5s")`},
		{"max_ttl just below 10s", map[string]string{"a.cedar": `@max_ttl("9.999s") ` + permit}, `@max_ttl`},
		{"max_ttl that is no duration", map[string]string{"a.cedar": `@max_ttl("an hour") ` + permit}, `@max_ttl`},
		{"negative max_ttl", map[string]string{"a.cedar": `@max_ttl("-1h") ` + permit}, `@max_ttl`},
		{"empty flow", map[string]string{"a.cedar": `@flow("") ` + permit}, "@flow names no flow"},
		{"flow of commas", map[string]string{"a.cedar": `@flow(" , ") ` + permit}, "@flow names no flow"},
		{"break_glass yes", map[string]string{"a.cedar": `@break_glass("yes") ` + permit}, "@break_glass"},
		{"flow on a forbid", map[string]string{"a.cedar": `@flow("two-sre-leads") forbid (principal, action, resource);`}, "only mean something on a permit"},
		{"max_ttl on a forbid", map[string]string{"a.cedar": `@max_ttl("1h") forbid (principal, action, resource);`}, "only mean something on a permit"},
		{"break_glass on a forbid", map[string]string{"a.cedar": `@break_glass("true") forbid (principal, action, resource);`}, "only mean something on a permit"},
		{"break_glass without its review flow", map[string]string{"a.cedar": `@break_glass("true") @max_ttl("5m") ` + permit}, "needs the @flow of its after-the-fact review"},
		{"duplicate id in a file", map[string]string{"a.cedar": `@id("x") ` + permit + "\n" + `@id("x") ` + permit}, `duplicate policy id "x"`},
		{"duplicate id across files", map[string]string{"a.cedar": `@id("x") ` + permit, "b.cedar": `@id("x") ` + permit}, `duplicate policy id "x"`},
		{"@id that is a default id", map[string]string{"a.cedar": permit + "\n" + `@id("a.cedar#0") ` + permit}, "duplicate policy id"},
		{"syntax error", map[string]string{"a.cedar": `permit (principal, action, resource`}, "a.cedar"},
		{"unknown keyword", map[string]string{"a.cedar": `allow (principal, action, resource);`}, "a.cedar"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string][]byte{}
			for n, s := range tt.files {
				files[n] = []byte(s)
			}
			s, err := policy.Load(files)
			require.Error(t, err)
			assert.Nil(t, s)
			assert.ErrorIs(t, err, policy.ErrLoad)
			assert.ErrorContains(t, err, tt.want)
		})
	}
}

func TestLoadAcceptsBoundaries(t *testing.T) {
	s, err := policy.Load(map[string][]byte{"a.cedar": []byte(`
@max_ttl("10s") @break_glass("false") permit (principal, action == Action::"a", resource);
@flow(" one ,two,one ") permit (principal, action == Action::"b", resource);
`)})
	require.NoError(t, err)
	d := s.Decide(input(carol, "a", "x"))
	assert.Equal(t, policy.OutcomeAllow, d.Outcome)
	assert.Equal(t, 10*time.Second, d.MaxTTL)
	assert.False(t, d.BreakGlass)
	assert.Equal(t, []string{"a.cedar#0"}, d.Reasons, "a policy without @id is <file>#<n>")

	d = s.Decide(input(carol, "b", "x"))
	assert.Equal(t, policy.OutcomeReview, d.Outcome)
	assert.Equal(t, []string{"one", "two"}, d.Flows, "flows trimmed and once each")
	assert.Equal(t, []string{"a.cedar#1"}, d.Reasons)
	assert.Equal(t, []string{"one", "two"}, s.FlowNames())
}

func TestLoadReportsEveryError(t *testing.T) {
	_, err := policy.Load(map[string][]byte{
		"a.cedar": []byte(`@max_ttl("5s") permit (principal, action, resource);`),
		"b.cedar": []byte(`@flow("f") forbid (principal, action, resource);`),
	})
	require.ErrorIs(t, err, policy.ErrLoad)
	assert.ErrorContains(t, err, "a.cedar")
	assert.ErrorContains(t, err, "b.cedar")
}

func TestDigest(t *testing.T) {
	a := []byte(`@id("a") permit (principal, action, resource);`)
	b := []byte(`@id("b") forbid (principal, action, resource);`)
	load := func(files map[string][]byte) *policy.Set {
		s, err := policy.Load(files)
		require.NoError(t, err)
		return s
	}
	s1 := load(map[string][]byte{"a.cedar": a, "b.cedar": b})
	s2 := load(map[string][]byte{"b.cedar": b, "a.cedar": a})
	assert.Equal(t, s1.Digest(), s2.Digest(), "the digest does not depend on map order")
	assert.Regexp(t, `^sha256:[0-9a-f]{64}$`, s1.Digest())
	assert.Equal(t, events.Digest(s1.Source()), s1.Digest(), "the digest covers exactly Source")
	assert.Contains(t, string(s1.Source()), "-- a.cedar\n")
	assert.Contains(t, string(s1.Source()), string(b))

	s3 := load(map[string][]byte{"a.cedar": a, "b.cedar": append([]byte("// comment\n"), b...)})
	assert.NotEqual(t, s1.Digest(), s3.Digest(), "any change of text changes the digest")
	s4 := load(map[string][]byte{"a.cedar": a, "c.cedar": b})
	assert.NotEqual(t, s1.Digest(), s4.Digest(), "file names are part of the text")

	src := s1.Source()
	src[0] = 'X'
	assert.NotEqual(t, src, s1.Source(), "Source returns a copy")
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join("testdata", "acme.cedar"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.cedar"), b, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README.md"), []byte("not a policy ("), 0o644))
	s, err := policy.LoadDir(dir)
	require.NoError(t, err)
	assert.Equal(t, sample(t).Digest(), s.Digest(), "LoadDir reads only *.cedar, keyed by base name")
	assert.Equal(t, []string{"two-sre-leads"}, s.FlowNames())

	_, err = policy.LoadDir(t.TempDir())
	assert.ErrorIs(t, err, policy.ErrLoad)
	_, err = policy.LoadDir(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, policy.ErrLoad)
}

func TestContextRecord(t *testing.T) {
	c := policy.Context{
		Urgency: "high", Reason: "why", Ticket: "OPS-1", Origin: "acme", TTL: 90 * time.Second,
		Params: map[string]string{"a": "b"}, Time: t0.In(time.FixedZone("X", 3600)),
	}
	assert.Equal(t, map[string]any{
		"urgency": "high", "reason": "why", "ticket": "OPS-1", "origin": "acme",
		"ttl_seconds": int64(90), "params": map[string]any{"a": "b"}, "now": "2025-03-14T09:00:00Z",
	}, c.Record())
	assert.Equal(t, map[string]any{}, policy.Context{}.Record()["params"], "params is always an object")
}

// FuzzLoad checks that arbitrary policy text never panics the loader, and
// that a loaded set decides without panicking.
func FuzzLoad(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("testdata", "acme.cedar"))
	require.NoError(f, err)
	f.Add(b)
	f.Add([]byte(`@max_ttl("5s") permit (principal, action, resource);`))
	f.Add([]byte(`@flow("a,b") @break_glass("true") permit (principal, action, resource) when { context.params.x == "y" };`))
	f.Add([]byte(`forbid (principal, action, resource) unless { context.hour_utc > 3 };`))
	f.Fuzz(func(t *testing.T, text []byte) {
		s, err := policy.Load(map[string][]byte{"f.cedar": text})
		if err != nil {
			return
		}
		d := s.Decide(input(carol, "restart", "prod/db"))
		if d.Outcome != policy.OutcomeDeny && len(d.Errors) > 0 {
			t.Fatalf("%s despite errors %v", d.Outcome, d.Errors)
		}
		if d.Outcome == policy.OutcomeReview && len(d.Flows) == 0 {
			t.Fatal("review without flows")
		}
		if d.MaxTTL != 0 && d.MaxTTL < issuer.MinTTL {
			t.Fatalf("cap %s below the minimum", d.MaxTTL)
		}
	})
}
