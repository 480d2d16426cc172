package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBenchOptionsCluster(t *testing.T) {
	for n, want := range map[int]int{2: 2, 3: 3, 5: 3} {
		o := Options{Cluster: n}
		require.NoError(t, o.validate())
		assert.Equal(t, want, o.withDefaults().StreamReplicas, "stream replicas on %d nodes: min(N, 3)", n)
	}
	o := Options{Cluster: 5, StreamReplicas: 5}
	require.NoError(t, o.validate())
	assert.Equal(t, 5, o.withDefaults().StreamReplicas, "as many as asked, up to the nodes")
	o = Options{}
	require.NoError(t, o.validate())
	assert.Equal(t, 1, o.withDefaults().StreamReplicas)

	for _, tc := range []struct {
		o    Options
		want error
	}{
		{Options{Cluster: 3, Server: "nats://127.0.0.1:4222"}, ErrClusterWithServer},
		{Options{Cluster: 1}, ErrClusterSize},
		{Options{Cluster: -1}, ErrClusterSize},
		{Options{Cluster: MaxCluster + 1}, ErrClusterSize},
		{Options{Cluster: 3, StreamReplicas: 4}, ErrOverReplicated},
	} {
		assertRefused(t, tc.o, tc.want)
	}
}

func TestBenchOptionsSetup(t *testing.T) {
	o := Options{Setup: "/writ", Server: "nats://127.0.0.1:4222"}
	require.NoError(t, o.validate())
	assert.Equal(t, []int{1}, o.withDefaults().Replicas, "the relay runs one replica")

	for _, tc := range []struct {
		o    Options
		want error
	}{
		{Options{Setup: "/writ"}, ErrSetupNeedsServer},
		{Options{Setup: "/writ", Server: "nats://127.0.0.1:4222", Replicas: []int{2}}, ErrSetupReplicas},
		{Options{Setup: "/writ", Server: "nats://127.0.0.1:4222", StreamReplicas: 3}, ErrSetupStreamReplicas},
	} {
		assertRefused(t, tc.o, tc.want)
	}
}

func TestBenchOptionsBounds(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want error
	}{
		{Options{Requests: -1}, ErrOutOfRange},
		{Options{Requests: MaxRequests + 1}, ErrOutOfRange},
		{Options{Inflight: MaxInflight + 1}, ErrOutOfRange},
		{Options{Replicas: []int{1, MaxReplicas + 1}}, ErrOutOfRange},
		{Options{StreamReplicas: 6}, ErrOutOfRange},
		{Options{Timeout: -time.Second}, ErrNegative},
		{Options{RequestTimeout: -time.Second}, ErrNegative},
		{Options{Warmup: -1}, ErrNegative},
	} {
		assertRefused(t, tc.o, tc.want)
	}
}

// assertRefused checks that o is refused for want (and ErrInvalid), and
// for nothing else the options can be refused for.
func assertRefused(t *testing.T, o Options, want error) {
	t.Helper()
	err := o.validate()
	assert.ErrorIs(t, err, ErrInvalid, "%+v", o)
	assert.ErrorIs(t, err, want, "%+v", o)
	for _, other := range []error{ErrClusterWithServer, ErrClusterSize, ErrOverReplicated, ErrSetupNeedsServer,
		ErrSetupReplicas, ErrSetupStreamReplicas, ErrOutOfRange, ErrNegative} {
		if other != want {
			assert.NotErrorIs(t, err, other, "%+v", o)
		}
	}
}

func TestBenchPhaseNames(t *testing.T) {
	assert.Equal(t, "concurrent x2", Phase{Name: "concurrent", Replicas: 2}.short())
	assert.Equal(t, "concurrent, 2 replicas", Phase{Name: "concurrent", Replicas: 2}.label())
	assert.Equal(t, "sequential, 1 replica", Phase{Name: "sequential", Replicas: 1}.label())
	assert.Equal(t, "review, served elsewhere", Phase{Name: "review"}.short())
	assert.Equal(t, "review, served elsewhere", Phase{Name: "review"}.label())
}
