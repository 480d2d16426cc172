package notify_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/notify"
)

// The notifier refuses a configuration it cannot deliver with, with an
// error a caller can match, apart from the environment's; zero values are
// defaults, not problems.
func TestNewNotifierRefusesInvalidConfiguration(t *testing.T) {
	e := writtest.Start(t, writtest.Options{NoServe: true})
	env := consumers.Env{NC: e.NC, Domain: e.Domain, Bundle: e.Runtime.Bundle}

	_, err := notify.NewNotifier(env, notify.NotifierConfig{Timeout: time.Minute})
	assert.ErrorIs(t, err, notify.ErrNotifierConfig)
	assert.NotErrorIs(t, err, consumers.ErrInvalidEnv)
	_, err = notify.NewNotifier(consumers.Env{NC: e.NC, Domain: "Acme", Bundle: e.Runtime.Bundle}, notify.NotifierConfig{})
	assert.ErrorIs(t, err, consumers.ErrInvalidEnv)
	n, err := notify.NewNotifier(env, notify.NotifierConfig{})
	require.NoError(t, err, "every zero value has its default")
	assert.NotNil(t, n)
}
