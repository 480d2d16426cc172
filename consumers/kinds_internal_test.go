package consumers

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/writ-dev/writ/events"
)

// The auditor's durable filters on its kinds: a wire contract. They are
// derived from the kind table; this pins what they come to.
func TestDisownedKinds(t *testing.T) {
	assert.Equal(t, []events.Kind{
		events.KindRejected, events.KindDenied, events.KindExpired, events.KindGranted, events.KindRefused,
		events.KindRedeemed, events.KindRevoked, events.KindLocked, events.KindEscalated, events.KindAlerted,
		events.KindReviewed, events.KindPolicy, events.KindStated, events.KindCounted,
	}, disownedKinds)
}
