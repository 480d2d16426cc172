package notify

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/writ-dev/writ/events"
)

// The notifier's kinds are its own choice, made for every kind of the kind
// table: a kind added must be placed here, notified or not.
func TestNotifiedKindsCoverTheKindTable(t *testing.T) {
	// Not notified: the notifier tells people of what needs them or
	// ends a request (evaluated, voted, the decisions, grants, refusals,
	// alerts), not of every record.
	quiet := map[events.Kind]bool{
		events.KindRequested: true, events.KindRedeemed: true, events.KindRevoke: true, events.KindLock: true,
		events.KindLocked: true, events.KindReviewed: true, events.KindPolicy: true, events.KindCheckpoint: true,
		events.KindWitnessed: true, events.KindState: true, events.KindStated: true, events.KindCounted: true,
	}
	for _, k := range events.Kinds() {
		assert.True(t, slices.Contains(notifiedKinds, k) != quiet[k], "%s: notified or quiet, and not both", k)
	}
}
