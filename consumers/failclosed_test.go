package consumers_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/internal/pipeline"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/request"
)

// Fail closed: while the audit stream cannot acknowledge, no grant is
// minted (its token only ever exists inside the granted event), requests
// fail with a clear error, and once the stream takes writes again the
// pipeline goes on where it stopped.
func TestNoGrantWhileTheStreamCannotAcknowledge(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	run := func(component string) *pipeline.Pipeline {
		p, err := pipeline.Build(e.NC, e.Runtime, pipeline.Options{Components: []string{component}, Logger: e.Logger})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { _ = p.Run(ctx) })
		t.Cleanup(func() { cancel(); wg.Wait() })
		return p
	}
	run("policy")
	id := e.Request("deploy-bot", client.Spec{Action: "deploy", Resource: "staging/web"})
	e.Await(id, 20*time.Second, func(s request.State) bool { return s.Status == request.StatusAllowed })

	// The stream stops taking writes.
	js, err := jetstream.New(e.NC)
	require.NoError(t, err)
	s, err := js.Stream(t.Context(), "WRIT")
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	cfg := info.Config
	full := cfg
	full.MaxMsgs, full.Discard = int64(info.State.Msgs), jetstream.DiscardNew
	_, err = js.UpdateStream(t.Context(), full)
	require.NoError(t, err)

	issuer := run("issuer")
	_, err = e.Client.Request(t.Context(), e.Identity("deploy-bot"), client.Spec{Domain: e.Domain, Action: "deploy", Resource: "staging/api"})
	require.ErrorIs(t, err, client.ErrNotRecorded, "a request the stream did not store is not made")
	assert.Contains(t, err.Error(), "maximum messages", "the user is told why")
	// The barrier: the issuer's guard has read the stream back and found
	// it unable to take what Writ appends. It opens (and the issuer pulls,
	// and mints) only once a read-back finds the stream set right, which
	// the test does below; until then no grant can come.
	require.Eventually(t, func() bool {
		s := issuer.Guard().Status()
		return !s.Open && slices.ContainsFunc(s.Weakened, func(w string) bool { return strings.Contains(w, "max messages") })
	}, 20*time.Second, 10*time.Millisecond, "the guard finds the stream full")
	r, err := e.Client.Load(t.Context(), e.Domain, id)
	require.NoError(t, err)
	assert.Equal(t, request.StatusAllowed, r.State.Status, "no grant while the stream cannot record it")
	assert.Nil(t, r.State.Grant)

	// The stream takes writes again: the grant follows.
	_, err = js.UpdateStream(t.Context(), cfg)
	require.NoError(t, err)
	r = e.Await(id, 30*time.Second, func(s request.State) bool { return s.Status == request.StatusGranted })
	assert.Equal(t, []string{"requested", "evaluated", "granted"}, writtest.Kinds(r))
}
