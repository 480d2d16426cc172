package bench

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBenchOptionsCluster(t *testing.T) {
	for n, want := range map[int]int{2: 2, 3: 3, 5: 3} {
		o := Options{Cluster: n}
		require.NoError(t, o.defaults())
		assert.Equal(t, want, o.StreamReplicas, "stream replicas on %d nodes: min(N, 3)", n)
	}
	o := Options{Cluster: 5, StreamReplicas: 5}
	require.NoError(t, o.defaults())
	assert.Equal(t, 5, o.StreamReplicas, "as many as asked, up to the nodes")
	o = Options{}
	require.NoError(t, o.defaults())
	assert.Equal(t, 1, o.StreamReplicas)

	for _, bad := range []Options{
		{Cluster: 3, Server: "nats://127.0.0.1:4222"},
		{Cluster: 1},
		{Cluster: -1},
		{Cluster: MaxCluster + 1},
		{Cluster: 3, StreamReplicas: 4},
	} {
		assert.Error(t, bad.defaults(), "%+v", bad)
	}
}

func TestBenchOptionsSetup(t *testing.T) {
	o := Options{Setup: "/writ", Server: "nats://127.0.0.1:4222"}
	require.NoError(t, o.defaults())
	assert.Equal(t, []int{1}, o.Replicas, "the relay runs one replica")

	for _, bad := range []Options{
		{Setup: "/writ"},
		{Setup: "/writ", Server: "nats://127.0.0.1:4222", Replicas: []int{2}},
		{Setup: "/writ", Server: "nats://127.0.0.1:4222", StreamReplicas: 3},
	} {
		assert.Error(t, bad.defaults(), "%+v", bad)
	}
}

func TestBenchPhaseNames(t *testing.T) {
	assert.Equal(t, "concurrent x2", Phase{Name: "concurrent", Replicas: 2}.short())
	assert.Equal(t, "concurrent, 2 replicas", Phase{Name: "concurrent", Replicas: 2}.label())
	assert.Equal(t, "sequential, 1 replica", Phase{Name: "sequential", Replicas: 1}.label())
	assert.Equal(t, "review, served elsewhere", Phase{Name: "review"}.short())
	assert.Equal(t, "review, served elsewhere", Phase{Name: "review"}.label())
}
