package callout_test

import (
	"testing"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"

	"github.com/writ-dev/writ/internal/callout"
)

// A configuration a Responder cannot run with is refused with an error a
// caller can match, before anything is started.
func TestNewRefusesConfig(t *testing.T) {
	for name, cfg := range map[string]callout.Config{
		"empty":                {},
		"a user key as signer": {Signer: mustKey(t, nkeys.CreateUser)},
		"a wildcard prefix":    {Prefix: "act.*"},
	} {
		r, err := callout.New(cfg)
		assert.ErrorIs(t, err, callout.ErrInvalidConfig, name)
		assert.Nil(t, r, name)
		assert.ErrorIs(t, cfg.Validate(), callout.ErrInvalidConfig, name)
	}
}
