package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/gen"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// TestAuditReplay replays generated requests (replaySize: 2,000, fewer
// under the race detector) with every filter and format, each checked for
// exactly the requests the generator made to match.
func TestAuditReplay(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	sum, err := gen.Generate(ctx, e, gen.Options{Requests: replaySize, Seed: 42})
	require.NoError(t, err)
	t.Logf("generated %d requests, %d events in %s (%.0f events/s)", len(sum.Requests), sum.Events, sum.Elapsed, sum.Rate())
	made := map[string]gen.Request{}
	for _, r := range sum.Requests {
		made[r.ID] = r
	}
	common := []string{"--dir", e.Dir, "--server", e.Server.ClientURL()}
	replay := func(args ...string) (string, string) {
		t.Helper()
		// A replay of thousands of histories may take longer than writ's
		// 30 s on a busy machine.
		rctx, rcancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer rcancel()
		var out, errOut bytes.Buffer
		err := run(rctx, append(append([]string{"audit", "replay"}, args...), common...), &out, &errOut)
		require.NoError(t, err, errOut.String())
		return out.String(), errOut.String()
	}
	want := func(keep func(gen.Request) bool) []string {
		var ids []string
		for _, r := range sum.Requests {
			if keep(r) {
				ids = append(ids, r.ID)
			}
		}
		sort.Strings(ids)
		return ids
	}

	// The table: a row per request, each as it was made.
	out, _ := replay("--format", "table")
	rows := tableRows(t, out)
	require.Len(t, rows, len(sum.Requests))
	for id, row := range rows {
		g, ok := made[id]
		require.True(t, ok, "a request the generator did not make: %s", id)
		approvers := slices.Clone(g.Voters)
		if g.Outcome == gen.ApproverDenied {
			approvers[len(approvers)-1] += "(deny)"
		}
		if len(approvers) == 0 {
			approvers = []string{"-"}
		}
		assert.Equal(t, []string{g.RequestedAt.Local().Format(time.DateTime), g.Requester, g.Action, g.Resource, g.Outcome.Status().String(), strings.Join(approvers, ",")},
			[]string{row[1], row[2], row[3], row[4], row[5], row[7]}, "request %s (%s)", id, g.Outcome)
		_, err := time.ParseDuration(row[6])
		assert.NoError(t, err, "duration %q", row[6])
	}

	// JSON lines: every event of the requests that match (the policy
	// record is no request's), each verified, with the event itself.
	out, _ = replay("--json", "--action", "read-logs")
	perRequest := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec jsonRecord
		require.NoError(t, json.Unmarshal([]byte(l), &rec), l)
		require.True(t, rec.Valid, l)
		require.NotEmpty(t, rec.Event)
		perRequest[rec.RequestID]++
	}
	readLogs := want(func(r gen.Request) bool { return r.Action == "read-logs" })
	require.NotEmpty(t, readLogs)
	assert.Len(t, perRequest, len(readLogs))
	for _, id := range readLogs {
		assert.Equal(t, made[id].Events, perRequest[id], "request %s", id)
	}

	// Each filter, on every history: exactly the requests made to match,
	// and none that the early look at the request message alone drops.
	times := make([]time.Time, 0, len(sum.Requests))
	for _, r := range sum.Requests {
		times = append(times, r.RequestedAt)
	}
	slices.SortFunc(times, time.Time.Compare)
	t1, t2 := times[len(times)/3], times[2*len(times)/3]
	voted := func(who string) func(gen.Request) bool {
		return func(r gen.Request) bool { return slices.Contains(r.Voters, who) }
	}
	cases := []struct {
		flags replayFlags
		keep  func(gen.Request) bool
	}{
		{replayFlags{outcome: "expired"}, func(r gen.Request) bool { return r.Outcome == gen.Expired }},
		{replayFlags{outcome: "granted,pending"}, func(r gen.Request) bool {
			return r.Outcome.Status() == request.StatusGranted || r.Outcome == gen.Pending
		}},
		{replayFlags{approver: "acme/alice"}, voted("acme/alice")},
		{replayFlags{approver: "bob", outcome: "denied"}, func(r gen.Request) bool {
			return voted("acme/bob")(r) && r.Outcome.Status() == request.StatusDenied
		}},
		{replayFlags{requester: "acme/deploy-bot"}, func(r gen.Request) bool { return r.Requester == "acme/deploy-bot" }},
		{replayFlags{requester: "carol", action: "restart"}, func(r gen.Request) bool {
			return r.Requester == "acme/carol" && r.Action == "restart"
		}},
		{replayFlags{action: "read-logs"}, func(r gen.Request) bool { return r.Action == "read-logs" }},
		{replayFlags{resource: "prod/db"}, func(r gen.Request) bool { return r.Resource == "prod/db" }},
		{replayFlags{resource: "prod/db/*"}, func(r gen.Request) bool { return strings.HasPrefix(r.Resource, "prod/db/") }},
		{replayFlags{resource: "staging/*"}, func(r gen.Request) bool { return strings.HasPrefix(r.Resource, "staging/") }},
		{replayFlags{resource: "staging/w*"}, func(r gen.Request) bool {
			return r.Resource == "staging/web" || r.Resource == "staging/worker"
		}},
		{replayFlags{since: t1.Format(time.RFC3339Nano), until: t2.Format(time.RFC3339Nano)}, func(r gen.Request) bool {
			return !r.RequestedAt.Before(t1) && r.RequestedAt.Before(t2)
		}},
		{replayFlags{until: t1.Format(time.RFC3339Nano), outcome: "granted"}, func(r gen.Request) bool {
			return r.RequestedAt.Before(t1) && r.Outcome.Status() == request.StatusGranted
		}},
	}
	filters := make([]replayFilter, len(cases))
	got := make([][]string, len(cases))
	for i, tc := range cases {
		filters[i], err = tc.flags.filter(time.Now())
		require.NoError(t, err)
	}
	var done, total uint64
	require.NoError(t, e.Client.ScanRequests(ctx, "", client.ScanOptions{Progress: func(d, n uint64) {
		require.GreaterOrEqual(t, d, done)
		done, total = d, n
	}}, func(r *client.Request) error {
		first := r.Records[slices.IndexFunc(r.Records, func(rec events.Record) bool { return rec.Kind == events.KindRequested })]
		for i, f := range filters {
			if f.keeps(r) {
				require.True(t, f.early(first), "%+v: the request message alone drops %s, which matches", cases[i].flags, r.State.ID)
				got[i] = append(got[i], r.State.ID)
			}
		}
		return nil
	}))
	assert.Equal(t, total, done)
	assert.EqualValues(t, sum.Events, total, "every message in the stream")
	for i, tc := range cases {
		expected := want(tc.keep)
		require.NotEmpty(t, expected, "%+v: a test that shows nothing", tc.flags)
		sort.Strings(got[i])
		assert.Equal(t, expected, got[i], "%+v", tc.flags)
	}

	// The same filters on the command line.
	for _, tc := range []struct {
		args []string
		keep func(gen.Request) bool
	}{
		{[]string{"--outcome", "expired,denied", "--resource", "prod/db"}, func(r gen.Request) bool {
			return (r.Outcome == gen.Expired || r.Outcome.Status() == request.StatusDenied) && r.Resource == "prod/db"
		}},
		{[]string{"--approver", "alice", "--resource", "prod/db/*", "--domain", "acme"}, func(r gen.Request) bool {
			return voted("acme/alice")(r) && strings.HasPrefix(r.Resource, "prod/db/")
		}},
		{[]string{"--requester", "acme/deploy-bot", "--since", t1.Format(time.RFC3339Nano), "--until", t2.Format(time.RFC3339Nano)}, func(r gen.Request) bool {
			return r.Requester == "acme/deploy-bot" && !r.RequestedAt.Before(t1) && r.RequestedAt.Before(t2)
		}},
	} {
		out, _ := replay(append(tc.args, "--format", "table")...)
		expected := want(tc.keep)
		require.NotEmpty(t, expected, "%v: a test that shows nothing", tc.args)
		assert.Equal(t, expected, sortedKeys(tableRows(t, out)), "%v", tc.args)
	}

	// The timeline of a filtered set: a history per request, every step
	// with its time since the start and since the step before.
	out, _ = replay("--action", "read-logs", "--requester", "alice")
	heads := regexp.MustCompile(`(?m)^request (\S+) in acme, `).FindAllStringSubmatch(out, -1)
	var ids []string
	for _, h := range heads {
		ids = append(ids, h[1])
	}
	sort.Strings(ids)
	assert.Equal(t, want(func(r gen.Request) bool { return r.Requester == "acme/alice" && r.Action == "read-logs" }), ids)
	steps := regexp.MustCompile(`(?m)^  #\d+ +\S+ +\+\S+ +\(\+\S+\) +(evaluated|granted) `).FindAllString(out, -1)
	assert.Len(t, steps, 2*len(ids), out)

	// One approved request, alone: who voted, when, and how long each step took.
	id := sum.IDs(gen.Approved)[0]
	out, errOut := replay("--request", id)
	assert.Empty(t, errOut)
	assert.Regexp(t, `^request `+id+` in acme, \S+ \S+: acme/carol wants restart on prod/\S+  → GRANTED after \S+\n`, out)
	for _, k := range []string{"requested", "evaluated", "voted", "approved", "granted"} {
		assert.Contains(t, out, " "+k+" ")
	}
	assert.Len(t, regexp.MustCompile(`(?m)^  #\d+ .*\(\+[^)]+\) +voted +acme/(alice|bob) +approve$`).FindAllString(out, -1), 2, out)
	out, errOut = replay("--request", id, "--outcome", "denied")
	assert.Empty(t, out)
	assert.Contains(t, errOut, "does not match")
	out, errOut = replay("--requester", "acme/nobody")
	assert.Empty(t, out)
	assert.Contains(t, errOut, "No request matches")

	// A scan from a time reads only what the stream stored since, and
	// says how far it is.
	since := time.Now()
	more, err := gen.Generate(ctx, e, gen.Options{Requests: 30, Seed: 43, Mix: gen.Mix{gen.AutoGranted: 1}})
	require.NoError(t, err)
	var mu sync.Mutex
	var seen []string
	done, total = 0, 0
	require.NoError(t, e.Client.ScanRequests(ctx, "", client.ScanOptions{
		Since: since,
		Keep: func(rec events.Record) bool {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, rec.RequestID)
			return false
		},
		Progress: func(d, n uint64) {
			assert.GreaterOrEqual(t, d, done)
			done, total = d, n
		},
	}, func(*client.Request) error { t.Error("kept nothing"); return nil }))
	sort.Strings(seen)
	assert.Equal(t, func() []string { ids := more.IDs(gen.AutoGranted); sort.Strings(ids); return ids }(), seen)
	assert.Equal(t, total, done)
	assert.EqualValues(t, more.Events, total, "from the first request message since then to the end")
}

// tableRows reads the table format: its columns by request id.
func tableRows(t *testing.T, out string) map[string][]string {
	t.Helper()
	rows := map[string][]string{}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if out == "" {
		return rows
	}
	require.True(t, strings.HasPrefix(lines[0], "ID "), "header: %q", lines[0])
	split := regexp.MustCompile(` {2,}`)
	for _, l := range lines[1:] {
		f := split.Split(strings.TrimSpace(l), -1)
		require.Len(t, f, 8, l)
		rows[f[0]] = f
	}
	return rows
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestAuditReplayCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--outcome", "nope"}, "granted, rejected"},
		{[]string{"--since", "yesterday"}, "duration ago"},
		{[]string{"--since", "1h", "--until", "2h"}, "before --until"},
		{[]string{"--resource", "[prod"}, "syntax error"},
		{[]string{"--json", "--format", "table"}, "--json is --format jsonl"},
		{[]string{"--format", "xml"}, "timeline, table or jsonl"},
	} {
		_, errOut, err := writ(t, append([]string{"audit", "replay", "--dir", t.TempDir()}, tc.args...)...)
		require.Error(t, err, "%v", tc.args)
		assert.Equal(t, exitUsage, exitCode(err), "%v", tc.args)
		assert.Contains(t, err.Error()+errOut, tc.want, "%v", tc.args)
	}
	out, _, err := writ(t, "audit", "replay", "--help")
	require.NoError(t, err)
	for _, f := range []string{"--since", "--until", "--domain", "--requester", "--approver", "--action", "--resource", "--outcome", "--request", "--format", "--json", "timeline", "table", "jsonl", "progress"} {
		assert.Contains(t, out, f)
	}
}

func TestReplayFilter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for s, want := range map[string]time.Time{
		"":                            {},
		"2h":                          now.Add(-2 * time.Hour),
		"90m":                         now.Add(-90 * time.Minute),
		"2026-02-27T08:30:00Z":        time.Date(2026, 2, 27, 8, 30, 0, 0, time.UTC),
		"2026-02-27T08:30:00.5+01:00": time.Date(2026, 2, 27, 7, 30, 0, 5e8, time.UTC),
		"2026-02-27":                  time.Date(2026, 2, 27, 0, 0, 0, 0, time.Local),
	} {
		got, err := parseWhen(s, now)
		require.NoError(t, err, s)
		assert.True(t, want.Equal(got), "%s: %s", s, got)
	}
	for _, s := range []string{"-2h", "last week", "2026-02-30"} {
		_, err := parseWhen(s, now)
		assert.Error(t, err, s)
	}

	for _, tc := range []struct {
		pattern, resource string
		want              bool
	}{
		{"", "prod/db", true},
		{"prod/db", "prod/db", true},
		{"prod/db", "prod/db/replica", false},
		{"prod/*", "prod/db/replica", true},
		{"prod/*", "prod", false},
		{"prod/*", "production/db", false},
		{"prod/d?", "prod/db", true},
		{"prod/*/replica", "prod/db/replica", true},
		{"*/db", "prod/db", true},
		{"*/db", "prod/db/x", false},
		{"prod/[ab]*", "prod/api", true},
	} {
		assert.Equal(t, tc.want, matchResource(tc.pattern, tc.resource), "%q ~ %q", tc.pattern, tc.resource)
	}

	f, err := replayFlags{outcome: "granted, expired", requester: "acme/carol"}.filter(now)
	require.NoError(t, err)
	assert.Equal(t, []request.Status{request.StatusGranted, request.StatusExpired}, f.outcomes)
	assert.False(t, f.all())
	empty, err := replayFlags{}.filter(now)
	require.NoError(t, err)
	assert.True(t, empty.all())
}
