package audit_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/audit"
)

// A real run's trail verifies: every signature, chain, invariant,
// checkpoint and re-evaluation holds; the junk outside any request is a
// warning only.
func TestRealRunVerifies(t *testing.T) {
	r := sharedRun(t)
	rep := verify(r.msgs, audit.Options{Bundle: r.env.Runtime.Bundle, Stream: "WRIT"})
	for _, f := range rep.Findings {
		t.Log(f)
	}
	require.True(t, rep.OK(), "%d errors", rep.Errors)
	assert.Equal(t, 1, rep.Warnings, "the junk message")
	assert.GreaterOrEqual(t, rep.Checkpoints, uint64(2))
	assert.EqualValues(t, 5, rep.Requests)
	assert.EqualValues(t, 5, rep.Reevaluated)
	assert.EqualValues(t, len(r.msgs), rep.Messages)
}
