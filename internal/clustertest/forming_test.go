package clustertest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/internal/embedded"
)

// A pipeline set up against a cluster still forming (writ serve started
// with the NATS nodes, as docker compose does): two of three nodes up
// elect no JetStream meta leader, and nothing can be made until the third
// arrives. The setup waits for it within its deadline instead of failing
// on the first "temporarily unavailable" or "no suitable peers" (both seen
// while a cluster forms); when the deadline ends first, the error says
// what the cluster answered.
func TestEnsureWaitsForTheClusterToForm(t *testing.T) {
	opts, err := embedded.LoopbackCluster("c", "n", 3, func(string) string { return t.TempDir() })
	require.NoError(t, err)
	start := func(i int) *embedded.Server {
		s, err := embedded.Start(opts[i])
		require.NoError(t, err)
		t.Cleanup(s.Shutdown)
		return s
	}
	first, _ := start(0), start(1)
	nc, err := nats.Connect(first.ClientURL())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	cfg := consumers.StreamConfig{Domain: "acme", Replicas: 3}

	began := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	err = consumers.EnsureStreams(ctx, js, cfg)
	cancel()
	require.Error(t, err, "nothing is made on a cluster without a meta leader")
	assert.GreaterOrEqual(t, time.Since(began), 2*time.Second, "waited out its deadline: %v", err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	t.Logf("two nodes of three, after 2s: %v", err)

	// Stopped while waiting (writ serve given Ctrl-C): it says so.
	ctx, cancel = context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel)
	began = time.Now()
	err = consumers.EnsureStreams(ctx, js, cfg)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(began), 2*time.Second, "stopped when asked")

	done := make(chan error, 1)
	began = time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		done <- consumers.EnsureStreams(ctx, js, cfg)
	}()
	time.Sleep(500 * time.Millisecond)
	start(2)
	select {
	case err := <-done:
		require.NoError(t, err, "the streams are made once the third node is up")
	case <-time.After(90 * time.Second):
		t.Fatal("EnsureStreams did not return")
	}
	t.Logf("streams made %s after the setup began, the third node started 500ms in", time.Since(began).Round(time.Millisecond))
	s, err := js.Stream(t.Context(), consumers.DefaultStream)
	require.NoError(t, err)
	assert.Len(t, s.CachedInfo().Cluster.Replicas, 2, "a leader and two followers")
}

// An error no waiting cures is returned at once, even with no deadline:
// three replicas asked of a server that is not in a cluster.
func TestEnsureDoesNotWaitOnAPermanentError(t *testing.T) {
	s, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	// A deadline far beyond "at once", so that a wait shows as a failure
	// rather than a hang.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	began := time.Now()
	err = consumers.EnsureStreams(ctx, js, consumers.StreamConfig{Domain: "acme", Replicas: 3})
	require.Error(t, err)
	assert.NotErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(began), 5*time.Second, "answered at once: %v", err)
}
