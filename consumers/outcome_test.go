package consumers_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/writ-dev/writ/consumers"
)

// The zero Outcome is no outcome: a Handled nobody filled in does not say
// its message was acknowledged. Every value prints without a panic, and the
// outcomes keep the names metrics label them with.
func TestOutcomeZeroIsNoOutcome(t *testing.T) {
	var h consumers.Handled
	assert.NotEqual(t, consumers.Acked, h.Outcome)
	assert.NotContains(t, consumers.Outcomes, h.Outcome)
	assert.Equal(t, consumers.OutcomeUnknown, h.Outcome)

	var names []string
	for _, o := range consumers.Outcomes {
		names = append(names, o.String())
	}
	assert.Equal(t, []string{"acked", "retried", "terminated"}, names)

	for o := range 256 {
		assert.NotPanics(t, func() { _ = consumers.Outcome(o).String() }, "outcome %d", o)
	}
	assert.Equal(t, "outcome(7)", consumers.Outcome(7).String())
	assert.Equal(t, "unknown", consumers.OutcomeUnknown.String())
}
