package consumers

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
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
