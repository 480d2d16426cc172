package audit_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/internal/pipeline"
	"github.com/writ-dev/writ/internal/writtest"
)

// Another domain records a domain's checkpoints; deleting and recreating
// the domain's whole stream then shows against what that witness holds,
// though the new stream is internally consistent.
func TestWitnessDetectsARewrittenStream(t *testing.T) {
	envs := writtest.Federation(t, map[string]writtest.Options{
		"hub":   {Audit: &config.Audit{CheckpointInterval: config.Duration(100 * time.Millisecond), Witness: []string{"spoke"}}},
		"spoke": {NoServe: true, Audit: &config.Audit{}},
	}, "hub", "spoke")
	hub, spoke := envs["hub"], envs["spoke"]
	stop := spoke.Serve("")
	spoke.Settle(spoke.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"}))
	checkpoint(t, spoke)

	heads := func() []audit.Head {
		// Read from the spoke: the hub's stream is another JetStream domain.
		hs, err := audit.WitnessHeads(t.Context(), spoke.Client.Reader("hub"), spoke.Client.Checker(), "hub", "spoke")
		require.NoError(t, err)
		return hs
	}
	require.Eventually(t, func() bool { return len(heads()) > 0 }, 10*time.Second, 50*time.Millisecond, "the hub witnesses the spoke's checkpoint")
	verifySpoke := func(hs []audit.Head) *audit.Report {
		rep, err := audit.VerifyStream(t.Context(), spoke.Client.Reader("spoke"), audit.Options{Bundle: spoke.Runtime.Bundle, Heads: hs}, nil)
		require.NoError(t, err)
		return rep
	}
	rep := verifySpoke(heads())
	require.True(t, rep.OK(), "%v", rep.Findings)

	// An administrator deletes the stream and starts over.
	stop()
	js, err := jetstream.New(spoke.NC)
	require.NoError(t, err)
	require.NoError(t, js.DeleteStream(t.Context(), "WRIT"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, pipeline.Ensure(ctx, spoke.NC, spoke.Runtime))
	spoke.Serve("")
	spoke.Settle(spoke.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/api"}))
	checkpoint(t, spoke)

	rep = verifySpoke(nil)
	assert.True(t, rep.OK(), "on its own the new stream is consistent: %v", rep.Findings)
	rep = verifySpoke(heads())
	require.False(t, rep.OK())
	found := false
	for _, f := range rep.Findings {
		found = found || f.Check == audit.CheckWitness
	}
	assert.True(t, found, "%v", rep.Findings)
	_ = hub
}

func checkpoint(t *testing.T, e *writtest.Env) audit.Made {
	t.Helper()
	m, err := e.NC.Request(audit.CheckpointSubject(e.Domain), nil, 10*time.Second)
	require.NoError(t, err)
	var made audit.Made
	require.NoError(t, json.Unmarshal(m.Data, &made), string(m.Data))
	return made
}
