package issuer_test

import (
	"encoding/json"
	"io/fs"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/schemas"
)

func TestCheckLifetimes(t *testing.T) {
	tests := []struct {
		name     string
		def, max time.Duration
		ok       bool
	}{
		{"the bounds themselves", issuer.MinTTL, issuer.MaxTTL, true},
		{"equal", time.Hour, time.Hour, true},
		{"default too short", issuer.MinTTL - time.Second, time.Hour, false},
		{"max too long", time.Hour, issuer.MaxTTL + time.Second, false},
		{"default above max", 2 * time.Hour, time.Hour, false},
		{"zero", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := issuer.CheckLifetimes(tt.def, tt.max)
			if tt.ok {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, issuer.ErrLifetimes)
			}
		})
	}
}

// The requested event's schema bounds a requested lifetime (ttl_seconds,
// 0 meaning the default) by the same limits Mint holds grants to.
func TestSchemaLifetimeBoundsAreTheIssuers(t *testing.T) {
	raw, err := fs.ReadFile(schemas.FS(), "writ.request.requested.v1.json")
	require.NoError(t, err)
	var doc struct {
		Properties struct {
			Data struct {
				Properties struct {
					TTL struct {
						AnyOf []struct {
							Const   *int64 `json:"const"`
							Minimum *int64 `json:"minimum"`
							Maximum *int64 `json:"maximum"`
						} `json:"anyOf"`
					} `json:"ttl_seconds"`
				} `json:"properties"`
			} `json:"data"`
		} `json:"properties"`
	}
	require.NoError(t, json.Unmarshal(raw, &doc))
	alts := doc.Properties.Data.Properties.TTL.AnyOf
	require.Len(t, alts, 2, "ttl_seconds: 0, or a lifetime within the bounds")
	require.NotNil(t, alts[0].Const)
	assert.Zero(t, *alts[0].Const)
	require.NotNil(t, alts[1].Minimum)
	require.NotNil(t, alts[1].Maximum)
	assert.Equal(t, int64(issuer.MinTTL/time.Second), *alts[1].Minimum)
	assert.Equal(t, int64(issuer.MaxTTL/time.Second), *alts[1].Maximum)
}
