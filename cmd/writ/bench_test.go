package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/bench"
	"github.com/writ-dev/writ/embedded"
)

func TestBenchJSON(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, []string{"bench", "--requests", "40", "--inflight", "8", "--json", "--sync=false", "--replicas", "1,2", "--review"}, &out, &errOut)
	require.NoError(t, err, errOut.String())
	assert.Empty(t, errOut.String(), "no progress bar, no log, off a terminal")

	var rep bench.Report
	require.NoError(t, json.Unmarshal(out.Bytes(), &rep), out.String())
	s := rep.Settings
	assert.Equal(t, "embedded", s.Server)
	assert.Equal(t, bench.SyncDefault, s.Sync)
	assert.Equal(t, "file", s.Storage)
	assert.Equal(t, []int{1, 2}, s.Replicas)
	assert.Equal(t, 40, s.Requests)
	assert.Equal(t, 8, s.Inflight)
	assert.NotEmpty(t, s.Go)
	assert.NotEmpty(t, s.NATSServer)
	assert.Positive(t, s.GOMAXPROCS)
	assert.Positive(t, s.RelayPayload)
	assert.Zero(t, rep.Errors)
	assert.Empty(t, rep.Incomplete)

	var names []string
	for _, p := range rep.Phases {
		names = append(names, p.Name+"/"+strings.Repeat("r", p.Replicas))
		require.NotNil(t, p.Limit, p.Name)
		require.NotNil(t, p.Writ, p.Name)
		require.NotNil(t, p.Ratio, p.Name)
		for path, r := range map[string]*bench.Result{"limit": p.Limit, "writ": p.Writ} {
			assert.Equal(t, 40, r.Requests, "%s %s", p.Name, path)
			assert.Equal(t, 40, r.OK, "%s %s: every request granted", p.Name, path)
			assert.Zero(t, r.Errors)
			l := r.Latency
			assert.Equal(t, 40, l.Count)
			assert.Positive(t, l.Min)
			assert.LessOrEqual(t, l.Min, l.P50)
			assert.LessOrEqual(t, l.P50, l.P90)
			assert.LessOrEqual(t, l.P90, l.P99)
			assert.LessOrEqual(t, l.P99, l.P999)
			assert.LessOrEqual(t, l.P999, l.Max)
			assert.Positive(t, r.Throughput)
			assert.Positive(t, r.Elapsed)
		}
		assert.Positive(t, p.Ratio.Throughput)
		assert.InDelta(t, p.Writ.Throughput/p.Limit.Throughput, p.Ratio.Throughput, 1e-9)
		assert.InDelta(t, float64(p.Writ.Latency.P99)/float64(p.Limit.Latency.P99), p.Ratio.P99, 1e-9)
		assert.Positive(t, p.Ratio.P50)
		assert.Positive(t, p.Ratio.P999)
	}
	assert.Equal(t, []string{"sequential/r", "concurrent/r", "concurrent/rr", "review/r"}, names)
	// Persisted messages: requested, evaluated, granted; the review adds
	// two votes and the approval; its relay is its critical path.
	assert.Equal(t, 3, rep.Phases[0].Hops)
	assert.Equal(t, 3, rep.Phases[0].LimitHops)
	assert.Equal(t, 6, rep.Phases[3].Hops)
	assert.Equal(t, 5, rep.Phases[3].LimitHops)
	assert.Equal(t, 8, rep.Phases[1].Inflight)
	assert.Equal(t, 1, rep.Phases[0].Inflight)

	var table bytes.Buffer
	require.NoError(t, rep.WriteTable(&table))
	assert.Contains(t, table.String(), "writ bench: server embedded")
	assert.Contains(t, table.String(), "sync NATS default")
	assert.Contains(t, table.String(), "review x1")
	assert.Equal(t, 4, strings.Count(table.String(), "writ/limit"))
}

// TestBenchServer runs the bench on a server of its own and checks the
// table, and that nothing the bench made stays behind.
func TestBenchServer(t *testing.T) {
	srv, err := embedded.Start(embedded.Options{Port: -1, StoreDir: filepath.Join(t.TempDir(), "js")})
	require.NoError(t, err)
	defer srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err = run(ctx, []string{"bench", "--server", srv.ClientURL(), "--requests", "10", "--inflight", "4"}, &out, &errOut)
	require.NoError(t, err, errOut.String())
	table := out.String()
	assert.Contains(t, table, "writ bench: server "+srv.ClientURL())
	assert.Contains(t, table, "sync as the server is set")
	for _, want := range []string{"phase", "p99.9", "sequential x1", "concurrent x1, 4 in flight", "limit", "writ", "writ/limit"} {
		assert.Contains(t, table, want)
	}
	assert.NotContains(t, table, "failed")

	nc, err := srv.Connect()
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	var left []string
	for name := range js.StreamNames(ctx).Name() {
		left = append(left, name)
	}
	assert.Empty(t, left, "the bench deletes its streams and the buckets it made")
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--replicas", "0"},
		{"bench", "--replicas", "1,x"},
		{"bench", "--requests", "-1"},
		{"bench", "--timeout", "0s"},
		{"bench", "extra"},
	} {
		_, _, err := writ(t, args...)
		require.Error(t, err, args)
		assert.Equal(t, exitUsage, exitCode(err), "%v: %v", args, err)
	}
}

func TestBenchProgressBar(t *testing.T) {
	var w bytes.Buffer
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	b := newBenchBar(&w, true, c.now)
	b.update(bench.Progress{Phase: "limit sequential", Done: 1, Total: 40})
	assert.Empty(t, w.String(), "nothing in the first tenth of a second")
	c.advance(time.Second)
	b.update(bench.Progress{Phase: "limit sequential", Done: 20, Total: 40})
	assert.Equal(t, "\rlimit sequential  [============>           ]  50%  20/40 requests  20 requests/s  ETA 1s\x1b[K", w.String())
	w.Reset()
	c.advance(time.Second)
	b.update(bench.Progress{Phase: "writ sequential", Done: 1, Total: 40})
	assert.Contains(t, w.String(), "writ sequential", "a new phase")
	assert.Contains(t, w.String(), "1/40 requests", "its rate starts over")
	b.clear()
	w.Reset()

	quiet := newBenchBar(&w, false, c.now)
	c.advance(time.Second)
	quiet.update(bench.Progress{Phase: "x", Done: 1, Total: 2})
	assert.Empty(t, w.String(), "not on a terminal")
}
