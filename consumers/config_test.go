package consumers_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/internal/writtest"
)

// A component refuses an environment it cannot run in, with an error a
// caller can match; zero values are defaults, not problems. (The
// notifier's configuration: notify's TestNewNotifierRefusesInvalidConfiguration.)
func TestConstructorsRefuseInvalidConfiguration(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	env := consumers.Env{NC: e.NC, Domain: e.Domain, Bundle: e.Runtime.Bundle}
	require.NoError(t, env.Validate())

	bad := consumers.Env{NC: e.NC, Domain: "Acme", Bundle: e.Runtime.Bundle}
	_, err := consumers.NewPolicy(bad, e.Runtime.PolicyKey, e.Runtime.Policies, e.Runtime.Flows)
	assert.ErrorIs(t, err, consumers.ErrInvalidEnv)
	_, err = consumers.NewGuard(consumers.Env{Domain: e.Domain, Bundle: e.Runtime.Bundle}, nil, consumers.GuardConfig{})
	assert.ErrorIs(t, err, consumers.ErrInvalidEnv, "no connection")
	assert.ErrorIs(t, bad.Validate(), consumers.ErrInvalidEnv)
}
