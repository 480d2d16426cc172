package consumers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/internal/embedded"
)

// What a forming cluster answers is waited on (until the caller's
// deadline); what is never a cluster forming is returned at once.
func TestClusterForming(t *testing.T) {
	api := func(code jetstream.ErrorCode, desc string) error {
		return fmt.Errorf("consumers: audit stream WRIT: %w", &jetstream.APIError{Code: 503, ErrorCode: code, Description: desc})
	}
	for _, tc := range []struct {
		err  error
		wait bool
	}{
		{api(10008, "JetStream system temporarily unavailable"), true},
		{api(10009, "JetStream cluster can not handle request"), true},
		{api(10004, "incomplete results"), true},
		{api(10005, "no suitable peers for placement, peer offline"), true},
		{api(10005, "no suitable peers for placement, miscellaneous issue"), true}, // a peer not yet heard from
		{api(10005, "no suitable peers for placement, jetstream not enabled in cluster"), true},
		{api(10005, "no suitable peers for placement"), true},                       // fewer peers known than replicas: forming, or too small
		{api(10005, "no suitable peers for placement, insufficient storage"), true}, // reads as any other 10005
		{api(10005, "no suitable peers for placement, tags not matched ['ssd']"), true},
		{api(10074, "replicas > 1 not supported in non-clustered mode"), false},
		{api(10058, "stream name already in use with a different configuration"), false},
		{fmt.Errorf("consumers: audit stream WRIT: %w", context.DeadlineExceeded), true},
		{nats.ErrTimeout, true},
		{nats.ErrNoResponders, false},
		{jetstream.ErrJetStreamNotEnabled, false},
		{ErrWeakened, false},
		{errors.New("something else"), false},
	} {
		assert.Equal(t, tc.wait, clusterForming(tc.err), "%v", tc.err)
	}
}

// A stream whose store the server fails to create (as when nats-server
// sets up the account's JetStream again under the create: storeRace) is
// asked for again, and made once the store can be.
func TestEnsureStreamsOutlastsAStoreRace(t *testing.T) {
	dir := t.TempDir()
	srv, err := embedded.Start(embedded.Options{Port: -1, StoreDir: dir})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect()
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	// A file where the account's streams directory goes: the server cannot
	// make the store, until it is gone.
	account := filepath.Join(dir, "jetstream", "$G")
	require.NoError(t, os.MkdirAll(account, 0o750))
	block := filepath.Join(account, "streams")
	require.NoError(t, os.WriteFile(block, nil, 0o600))
	// The block goes once the server has refused EnsureStreams's first
	// attempt: only another attempt can make the stream.
	mon, err := srv.Connect()
	require.NoError(t, err)
	t.Cleanup(mon.Close)
	refused := make(chan struct{})
	var once sync.Once
	_, err = mon.Subscribe("_INBOX.>", func(m *nats.Msg) {
		if strings.Contains(string(m.Data), `"err_code":10049`) {
			// (The server's cleanup of the failed create may have
			// removed it already.)
			once.Do(func() { _ = os.Remove(block); close(refused) })
		}
	})
	require.NoError(t, err)
	require.NoError(t, mon.Flush())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, EnsureStreams(ctx, js, StreamConfig{Domain: "acme"}))
	select {
	case <-refused:
	default:
		t.Fatal("the first attempt was not refused")
	}
}

// A server of a cluster just formed may not have enabled JetStream for
// the account yet: that is asked again, a few seconds at most, and then
// returned (an account without JetStream stays so).
func TestAccountRace(t *testing.T) {
	notYet := fmt.Errorf("consumers: audit stream WRIT: %w",
		&jetstream.APIError{Code: 503, ErrorCode: 10039, Description: "JetStream not enabled for account"})
	assert.True(t, accountRace(notYet))
	assert.False(t, clusterForming(notYet), "not waited on until the deadline")
	assert.False(t, accountRace(jetstream.ErrJetStreamNotEnabled), "a server without JetStream is not an account being set up")
	assert.False(t, accountRace(errors.New("something else")))
	var total time.Duration
	for i := 1; i < accountRaceAttempts; i++ {
		total += formingBackoff.Pause(i)
	}
	assert.Less(t, total, 10*time.Second, "bounded: a few seconds of attempts")
}
