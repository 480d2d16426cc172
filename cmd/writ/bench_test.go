package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/internal/bench"
	"github.com/writ-dev/writ/internal/embedded"
)

func TestBenchJSON(t *testing.T) {
	rep := benchJSON(t, 2*time.Minute, "--requests", "40", "--inflight", "8", "--sync=false", "--replicas", "1,2", "--review")
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
	assert.Zero(t, s.Cluster)
	assert.Empty(t, s.Setup)
	assert.Equal(t, config.DefaultWorkers, s.Workers, "Writ's handlers per component, and the relay's per hop")

	assert.Equal(t, []string{"sequential/r", "concurrent/r", "concurrent/rr", "review/r"}, phasesGranted(t, rep, 40))
	// Persisted messages: requested, evaluated, granted; the review adds
	// two votes and the approval, and the first vote's counted answer
	// unless the second vote came before the approval component handled
	// the first (it then answers both with the approval); its relay is its
	// critical path.
	assert.Equal(t, 3, rep.Phases[0].Hops)
	assert.Equal(t, 3, rep.Phases[0].LimitHops)
	assert.Equal(t, 3, rep.Phases[0].FloorHops)
	assert.Contains(t, []int{6, 7}, rep.Phases[3].Hops)
	assert.Equal(t, 5, rep.Phases[3].LimitHops)
	assert.Equal(t, 5, rep.Phases[3].FloorHops, "request, evaluation, both votes, approval, grant")
	assert.Equal(t, 8, rep.Phases[1].Inflight)
	assert.Equal(t, 1, rep.Phases[0].Inflight)

	var table bytes.Buffer
	require.NoError(t, rep.WriteTable(&table))
	assert.Contains(t, table.String(), "writ bench: server embedded")
	assert.Contains(t, table.String(), "sync NATS default")
	assert.Contains(t, table.String(), "review x1")
	assert.Equal(t, 4, strings.Count(table.String(), "writ/limit"))
	assert.Equal(t, 4, strings.Count(table.String(), "writ/floor"))
	assert.Contains(t, table.String(), "floor: the relay, each hop signing and checking")
}

// benchJSON runs writ bench with args and --json, and decodes its report.
func benchJSON(t *testing.T, timeout time.Duration, args ...string) *bench.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, append(append([]string{"bench"}, args...), "--json"), &out, &errOut)
	require.NoError(t, err, errOut.String())
	assert.Empty(t, errOut.String(), "no progress bar, no log, off a terminal")
	var rep bench.Report
	require.NoError(t, json.Unmarshal(out.Bytes(), &rep), out.String())
	assert.Zero(t, rep.Errors)
	assert.Empty(t, rep.Incomplete)
	return &rep
}

// phasesGranted checks that every phase measured the limit, the floor and
// Writ, each of its n requests through (Writ's granted), and names the
// phases: "concurrent/rr" for a phase with two Writ replicas, "concurrent/"
// for one served elsewhere.
func phasesGranted(t *testing.T, rep *bench.Report, n int) []string {
	t.Helper()
	var names []string
	for _, p := range rep.Phases {
		names = append(names, p.Name+"/"+strings.Repeat("r", p.Replicas))
		require.NotNil(t, p.Limit, p.Name)
		require.NotNil(t, p.Floor, p.Name)
		require.NotNil(t, p.Writ, p.Name)
		require.NotNil(t, p.Ratio, p.Name)
		require.NotNil(t, p.FloorRatio, p.Name)
		for path, r := range map[string]*bench.Result{"limit": p.Limit, "floor": p.Floor, "writ": p.Writ} {
			assert.Equal(t, n, r.Requests, "%s %s", p.Name, path)
			assert.Equal(t, n, r.OK, "%s %s: every request granted", p.Name, path)
			assert.Zero(t, r.Errors)
			l := r.Latency
			assert.Equal(t, n, l.Count)
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
		assert.InDelta(t, p.Writ.Throughput/p.Floor.Throughput, p.FloorRatio.Throughput, 1e-9)
		assert.InDelta(t, float64(p.Writ.Latency.P50)/float64(p.Floor.Latency.P50), p.FloorRatio.P50, 1e-9)
		assert.Equal(t, p.LimitHops, p.FloorHops, "%s: the floor is as long as the limit", p.Name)
	}
	return names
}

// TestBenchCluster runs the bench on a three-node embedded cluster: every
// stream replicated three times, the replicas and requesters spread over
// the nodes.
func TestBenchCluster(t *testing.T) {
	rep := benchJSON(t, time.Minute, "--cluster", "3", "--requests", "30", "--inflight", "8", "--replicas", "1,2")
	s := rep.Settings
	assert.Equal(t, 3, s.Cluster)
	assert.Equal(t, 3, s.StreamReplicas, "min(N, 3) by default")
	assert.Equal(t, "embedded", s.Server)
	assert.Equal(t, bench.SyncAlways, s.Sync)
	assert.Equal(t, []string{"sequential/r", "concurrent/r", "concurrent/rr"}, phasesGranted(t, rep, 30))

	var table bytes.Buffer
	require.NoError(t, rep.WriteTable(&table))
	assert.Contains(t, table.String(), "writ bench: server cluster of 3 embedded nodes (nats-server ")
	assert.Contains(t, table.String(), "stream replicas 3")
}

// TestBenchSetup benches a pipeline 'writ serve' serves, from outside it:
// the Writ phases run on the setup's stream, and the bench leaves every
// stream as it found it, but for the requests it made.
func TestBenchSetup(t *testing.T) {
	dir, url := serve(t)
	nc, err := operatorConn(t, dir, url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Every stream and its consumers, and how many messages the audit
	// stream holds.
	streams := func() (map[string][]string, uint64) {
		out, writ := map[string][]string{}, uint64(0)
		for info := range js.ListStreams(ctx).Info() {
			s, err := js.Stream(ctx, info.Config.Name)
			require.NoError(t, err)
			var cons []string
			for c := range s.ListConsumers(ctx).Info() {
				if c.Config.Durable != "" {
					cons = append(cons, c.Name)
				}
			}
			out[info.Config.Name] = cons
			if info.Config.Name == "WRIT" {
				writ = info.State.Msgs
			}
		}
		return out, writ
	}
	// serve says it serves as its components start, before each has made
	// its durable consumer: wait for the three on the audit stream and
	// the one on the timers.
	before, held := streams()
	for deadline := time.Now().Add(30 * time.Second); len(before["WRIT"]) < 3 || len(before["WRIT_TIMERS"]) < 1; before, held = streams() {
		require.True(t, time.Now().Before(deadline), "the served pipeline's consumers: %v", before)
		time.Sleep(20 * time.Millisecond)
	}

	rep := benchJSON(t, time.Minute, "--server", url, "--setup", dir, "--requests", "20", "--inflight", "4", "--review")
	s := rep.Settings
	assert.Equal(t, dir, s.Setup)
	assert.Equal(t, "acme", s.Domain)
	assert.Equal(t, "WRIT", s.Stream)
	assert.Equal(t, url, s.Server)
	assert.Equal(t, bench.SyncServer, s.Sync)
	assert.Equal(t, 1, s.StreamReplicas)
	assert.Empty(t, s.Replicas, "served elsewhere")
	assert.Equal(t, []string{"sequential/", "concurrent/", "review/"}, phasesGranted(t, rep, 20))

	after, holds := streams()
	assert.Equal(t, before, after, "no stream or durable consumer made or deleted")
	// Three events an automatic request, six a reviewed one, warm-ups
	// besides.
	assert.GreaterOrEqual(t, holds-held, uint64(3*20*2+6*20), "the requests went to the served stream")

	var table bytes.Buffer
	require.NoError(t, rep.WriteTable(&table))
	assert.Contains(t, table.String(), "Writ replicas served elsewhere: domain acme, stream WRIT, setup "+dir)
	assert.Contains(t, table.String(), "concurrent, served elsewhere, 4 in flight")
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
	for _, want := range []string{"phase", "p99.9", "sequential x1", "concurrent x1, 4 in flight", "limit", "floor", "writ", "writ/limit", "writ/floor"} {
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
		{"bench", "--cluster", "3", "--server", "nats://127.0.0.1:4222"},
		{"bench", "--cluster", "1"},
		{"bench", "--cluster", "3", "--stream-replicas", "5"},
		{"bench", "--setup", "/nonexistent"},
		{"bench", "--setup", "/nonexistent", "--server", "nats://127.0.0.1:4222", "--replicas", "2"},
		{"bench", "--setup", "/nonexistent", "--server", "nats://127.0.0.1:4222", "--stream-replicas", "1"},
	} {
		_, _, err := writ(t, args...)
		require.Error(t, err, args)
		assert.Equal(t, exitUsage, exitCode(err), "%v: %v", args, err)
	}
}

// TestBenchHelp: the help says what the limit and the floor are.
func TestBenchHelp(t *testing.T) {
	out, _, err := writ(t, "bench", "--help")
	require.NoError(t, err)
	for _, want := range []string{"limit  a bare JetStream relay", "floor  the same relay", "cryptography Writ must do", "seals it to the requester"} {
		assert.Contains(t, out, want)
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

// --blockprofile and --mutexprofile write profiles of the run that go tool
// pprof reads; the block profile records where the run waited (an embedded
// server, starting, sets the process's block profile rate to its own: the
// bench's must survive it).
func TestBenchProfiles(t *testing.T) {
	dir := t.TempDir()
	block, mutex := filepath.Join(dir, "block.pprof"), filepath.Join(dir, "mutex.pprof")
	benchJSON(t, time.Minute, "--requests", "10", "--inflight", "2", "--sync=false", "--blockprofile", block, "--mutexprofile", mutex)
	assert.True(t, bytes.Contains(gunzip(t, block), []byte("internal/bench.drive")), "the requesters' waits are in the block profile")
	gunzip(t, mutex)

	var errOut bytes.Buffer
	err := run(t.Context(), []string{"bench", "--blockprofile", filepath.Join(dir, "missing", "block.pprof")}, io.Discard, &errOut)
	require.ErrorIs(t, err, fs.ErrNotExist, "a profile that cannot be written stops the bench before it runs")
}

// gunzip reads a gzipped file (a pprof profile).
func gunzip(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err, "%s is a gzipped profile", path)
	b, err := io.ReadAll(zr)
	require.NoError(t, err)
	return b
}
