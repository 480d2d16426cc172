package embedded_test

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/internal/embedded"
)

// Three embedded servers, each routed to all three, make one JetStream
// cluster: an R3 stream keeps taking writes with a node down, and the node
// catches up when it returns on its store.
func TestClusterReplicatesAStream(t *testing.T) {
	const n = 3
	opts, err := embedded.LoopbackCluster("c", "n", n, func(string) string { return t.TempDir() })
	require.NoError(t, err)
	require.Len(t, opts, n)
	ports := map[int]bool{}
	for _, o := range opts {
		ports[o.Port], ports[o.Cluster.Port] = true, true
		assert.Len(t, o.Cluster.Routes, n, "every node has the whole route list")
	}
	assert.Len(t, ports, 2*n, "no port given twice")
	srvs := make([]*embedded.Server, n)
	start := func(i int) {
		s, err := embedded.Start(opts[i])
		require.NoError(t, err)
		srvs[i] = s
		t.Cleanup(s.Shutdown)
	}
	// A node is ready for connections before its peers are up.
	for i := range n {
		start(i)
	}
	t0 := time.Now()
	require.Eventually(t, func() bool {
		for _, s := range srvs {
			if !s.JetStreamCurrent() {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond, "a meta leader every node follows")
	t.Logf("meta leader after %s", time.Since(t0))

	nc, err := nats.Connect(srvs[0].ClientURL()+","+srvs[1].ClientURL()+","+srvs[2].ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	// Just after its election the meta leader may not know every peer to
	// be online yet ("no suitable peers for placement"): ask again.
	var s jetstream.Stream
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		s, err = js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3, Storage: jetstream.FileStorage})
		assert.NoError(c, err)
	}, 30*time.Second, 100*time.Millisecond, "an R3 stream placed")
	assert.Len(t, s.CachedInfo().Cluster.Replicas, 2, "a leader and two followers")
	_, err = js.Publish(t.Context(), "r3.a", []byte("1"))
	require.NoError(t, err)

	leader := s.CachedInfo().Cluster.Leader
	down := -1
	for i, srv := range srvs {
		if srv.Name() == leader {
			down = i
		}
	}
	require.GreaterOrEqual(t, down, 0)
	srvs[down].Shutdown()
	t0 = time.Now()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, err := js.Publish(t.Context(), "r3.b", []byte("2"), jetstream.WithMsgID("b"))
		assert.NoError(c, err)
	}, 30*time.Second, 100*time.Millisecond, "two of three nodes take writes")
	t.Logf("writes again %s after the leader went", time.Since(t0))
	downName := srvs[down].Name()
	behind, err := embedded.Behind(t.Context(), js, nil)
	require.NoError(t, err)
	assert.NotEmpty(t, behind, "counting the stopped node, a replica is not current")
	require.Eventually(t, func() bool {
		b, err := embedded.Behind(t.Context(), js, func(node string) bool { return node != downName })
		return err == nil && b == ""
	}, 30*time.Second, 50*time.Millisecond, "the nodes that run serve every stream")

	t0 = time.Now()
	start(down)
	require.Eventually(t, func() bool {
		info, err := s.Info(t.Context())
		if err != nil || info.Cluster == nil || info.State.Msgs != 2 {
			return false
		}
		for _, p := range info.Cluster.Replicas {
			if !p.Current {
				return false
			}
		}
		return len(info.Cluster.Replicas) == 2
	}, 30*time.Second, 50*time.Millisecond, "the node is back and current")
	require.Eventually(t, func() bool {
		b, err := embedded.Behind(t.Context(), js, nil)
		return err == nil && b == ""
	}, 30*time.Second, 50*time.Millisecond, "nothing behind")
	t.Logf("the node current again %s after its restart", time.Since(t0))
}

func TestClusterOptionsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    embedded.Options
		is   error
	}{
		{"no cluster name", embedded.Options{Name: "n1", Cluster: &embedded.Cluster{Port: -1}}, nil},
		{"no server name", embedded.Options{Cluster: &embedded.Cluster{Name: "c", Port: -1}}, nil},
		{"no route port", embedded.Options{Name: "n1", Cluster: &embedded.Cluster{Name: "c"}}, nil},
		{"a route beyond loopback", embedded.Options{Name: "n1", Cluster: &embedded.Cluster{Name: "c", Port: -1, Routes: []string{"nats-route://192.0.2.1:6222"}}}, embedded.ErrNotLoopback},
		{"a route that is no URL", embedded.Options{Name: "n1", Cluster: &embedded.Cluster{Name: "c", Port: -1, Routes: []string{"::"}}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Port, tc.o.StoreDir = -1, t.TempDir()
			_, err := embedded.Start(tc.o)
			require.Error(t, err)
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
		})
	}
	t.Run("a taken route port", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		_, err = embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir(), Name: "n1",
			Cluster: &embedded.Cluster{Name: "c", Port: l.Addr().(*net.TCPAddr).Port}})
		assert.ErrorIs(t, err, embedded.ErrPortInUse)
	})
}
