package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/examples/target-service/dboperator"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// syncBuffer is a buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The command wires a Writ directory's setup into a serving db-operator.
func TestRun(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--dir", e.Dir, "--server", e.Server.ClientURL(), "--service", "acme-db"}, &stdout, &stderr)
	}()
	// The "serving" line comes once the server has the endpoints (a ping
	// would not do: the service answers pings before its endpoints exist).
	require.Eventually(t, func() bool {
		return strings.Contains(stdout.String(), "serving domain")
	}, 10*time.Second, 20*time.Millisecond, "the service starts; stderr:\n%s", &stderr)

	id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/orders", TTL: 5 * time.Minute})
	r := e.Settle(id)
	require.Equal(t, request.StatusGranted, r.State.Status)
	who := e.Identity("deploy-bot")
	token, err := client.OpenGrant(r.State, who)
	require.NoError(t, err)
	call := func() (dboperator.Result, error) {
		cmd, err := dboperator.NewCommand(who.Key, token, "deploy", "staging/orders", nil, time.Now())
		require.NoError(t, err)
		return dboperator.Call(t.Context(), e.NC, "acme-db", "deploy", cmd)
	}
	res, err := call()
	require.NoError(t, err)
	assert.Equal(t, id, res.RequestID)
	_, err = call()
	var refusal *dboperator.Refusal
	require.ErrorAs(t, err, &refusal)
	assert.Equal(t, "already-used", refusal.Code)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return")
	}
	assert.Contains(t, stdout.String(), `acme-db serving domain "acme" on act.acme-db.*`)
	assert.Contains(t, stderr.String(), "applied migrations to staging/orders")
	assert.NotContains(t, stderr.String(), token, "the token is never logged")

	// The redemption is in the audit stream, under the service's name.
	r, err = e.Client.Load(t.Context(), writtest.Domain, id)
	require.NoError(t, err)
	assert.Equal(t, request.StatusRedeemed, r.State.Status)
}

func TestRunRefuses(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no setup", []string{"--dir", t.TempDir()}, "no Writ setup"},
		{"stray argument", []string{"restart"}, "unexpected arguments"},
		{"bad log level", []string{"--log-level", "loud"}, "--log-level"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(t.Context(), tt.args, &out, &errOut)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}
