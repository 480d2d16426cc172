package audit_test

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/internal/store"
	"github.com/writ-dev/writ/internal/writtest"
)

// The auditor's client: a checkpoint asked for, an evidence bundle made
// and attested, and each way an ask fails told apart by its sentinel.
func TestAskAuditor(t *testing.T) {
	e := writtest.Start(t, writtest.Options{})
	ctx := t.Context()
	id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	e.Settle(id)

	made, err := audit.AskCheckpoint(ctx, e.NC, e.Domain)
	require.NoError(t, err)
	require.NotZero(t, made.Seq)
	again, err := audit.AskCheckpoint(ctx, e.NC, e.Domain)
	require.NoError(t, err)
	assert.Equal(t, made.Seq, again.Seq, "nothing new: the same checkpoint")

	reader := store.Reader{NC: e.NC, Stream: "WRIT"}
	ev, err := audit.ExportEvidence(ctx, e.NC, reader, e.Runtime.Bundle, e.Domain, id)
	require.NoError(t, err)
	require.NotNil(t, ev.Attestation)
	rep := audit.VerifyEvidence(ev, e.Runtime.Bundle)
	assert.True(t, rep.OK(), "%v", rep.Findings)

	// A bundle that is not the stream's: the auditor refuses, and says why.
	ev.Messages, ev.Attestation = ev.Messages[:len(ev.Messages)-1], nil
	_, err = audit.AskAttestation(ctx, e.NC, ev)
	require.ErrorIs(t, err, audit.ErrRefused)
	assert.NotErrorIs(t, err, audit.ErrNoAuditor)
	assert.ErrorContains(t, err, "exactly the request's stored messages")

	// A domain no auditor serves: nobody answers.
	_, err = audit.AskCheckpoint(ctx, e.NC, "nowhere")
	require.ErrorIs(t, err, audit.ErrNoAuditor)
	assert.ErrorIs(t, err, nats.ErrNoResponders, "the cause is kept")
	var ae *audit.AskError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, "nowhere", ae.Domain)
}
