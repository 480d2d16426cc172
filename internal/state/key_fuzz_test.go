package state_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/writ-dev/writ/internal/state"
)

// TestParseKeyRefusesAnEscapedSlash is the input FuzzParseKey found: an
// encoded segment that decodes to two segments.
func TestParseKeyRefusesAnEscapedSlash(t *testing.T) {
	_, _, err := state.ParseKey("0.=5f702f2d70.0000000")
	assert.ErrorIs(t, err, state.ErrKey)
}
