package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBenchTableFloor: a phase with a floor prints its row and Writ's ratio
// to it after the ratio to the limit; a report without one (older JSON)
// prints neither.
func TestBenchTableFloor(t *testing.T) {
	res := func(rps float64, p50 time.Duration) *Result {
		return &Result{Requests: 10, OK: 10, Throughput: rps, Latency: Summary{Count: 10, Min: p50, P50: p50, P90: p50, P99: p50, P999: p50, Max: p50}}
	}
	p := Phase{Name: "sequential", Replicas: 1, Inflight: 1, Hops: 3, LimitHops: 3, FloorHops: 3,
		Limit: res(2000, 500*time.Microsecond), Floor: res(1000, time.Millisecond), Writ: res(250, 4*time.Millisecond)}
	p.Ratio, p.FloorRatio = compare(p.Limit, p.Writ), compare(p.Floor, p.Writ)
	rep := &Report{Settings: Settings{Sync: SyncDefault, Replicas: []int{1}}, Phases: []Phase{p}}
	var b bytes.Buffer
	require.NoError(t, rep.WriteTable(&b))
	// The rows under the table's header: each path and its figures.
	_, rows, ok := strings.Cut(b.String(), "\nphase ")
	require.True(t, ok, b.String())
	var paths []string
	for _, line := range strings.Split(rows, "\n")[1:] {
		f := strings.Fields(strings.TrimPrefix(line, "sequential x1"))
		if len(f) == 0 {
			continue
		}
		paths = append(paths, f[0])
		switch f[0] {
		case "writ/limit":
			assert.Equal(t, []string{"0.12x", "8.00x"}, []string{f[1], f[3]}, line)
		case "writ/floor":
			assert.Equal(t, []string{"0.25x", "4.00x"}, []string{f[1], f[3]}, line)
		}
	}
	assert.Equal(t, []string{"limit", "floor", "writ", "writ/limit", "writ/floor"}, paths, b.String())
	assert.Contains(t, b.String(), "floor: the relay, each hop signing and checking")

	p.Floor, p.FloorRatio = nil, nil
	rep.Phases = []Phase{p}
	b.Reset()
	require.NoError(t, rep.WriteTable(&b))
	assert.NotContains(t, b.String(), "writ/floor")
	assert.Contains(t, b.String(), "writ/limit")
}

// TestBenchRunFloor runs a short bench, the review path too: every phase
// measures the floor, each of its requests through, and Writ's ratio to it.
func TestBenchRunFloor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Options{Requests: 12, Inflight: 4, Warmup: 4, Review: true})
	require.NoError(t, err)
	require.Len(t, rep.Phases, 3)
	for _, p := range rep.Phases {
		require.NotNil(t, p.Floor, p.Name)
		assert.Equal(t, 12, p.Floor.OK, p.Name)
		assert.Zero(t, p.Floor.Errors, p.Name)
		require.NotNil(t, p.FloorRatio, p.Name)
		assert.InDelta(t, p.Writ.Throughput/p.Floor.Throughput, p.FloorRatio.Throughput, 1e-9, p.Name)
		assert.InDelta(t, float64(p.Writ.Latency.P50)/float64(p.Floor.Latency.P50), p.FloorRatio.P50, 1e-9, p.Name)
		assert.Equal(t, p.LimitHops, p.FloorHops, "%s: the floor is as long as the limit", p.Name)
	}
	assert.Equal(t, 3, rep.Phases[0].FloorHops)
	assert.Equal(t, 5, rep.Phases[2].FloorHops, "review: request, evaluation, votes, approval, grant")
}
