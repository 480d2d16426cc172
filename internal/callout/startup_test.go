package callout_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/redeem"
)

// A callout whose redeemer cannot start says why within a second — Run
// returns the cause — rather than refuse every connection in silence
// until it is stopped. Here the used-grants bucket was made again by hand,
// keeping entries for a minute: too briefly for single use.
func TestRunReportsRedeemerStartUpError(t *testing.T) {
	t.Parallel()
	f := start(t, false)
	f.stopResp()
	f.stopPipe() // its guard must not repair the bucket first
	if err := f.js.DeleteKeyValue(t.Context(), redeem.BucketUsed); err != nil {
		require.ErrorIs(t, err, jetstream.ErrBucketNotFound)
	}
	_, err := f.js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: redeem.BucketUsed, TTL: time.Minute})
	require.NoError(t, err)

	resp := f.responder(t)
	done := make(chan error, 1)
	go func() { done <- resp.Run(t.Context()) }()
	select {
	case err := <-done:
		require.ErrorIs(t, err, redeem.ErrBucketTooShort)
	case <-time.After(time.Second):
		t.Fatal("the callout did not report its redeemer's start-up error within a second")
	}
}
