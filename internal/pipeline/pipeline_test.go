package pipeline_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/internal/embedded"
	"github.com/writ-dev/writ/internal/pipeline"
)

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	_, err := config.Init(dir, "acme")
	require.NoError(t, err)
	cfg, err := config.Load(dir)
	require.NoError(t, err)
	rt, err := cfg.Open()
	require.NoError(t, err)
	srv, err := embedded.Start(embedded.Options{Port: -1, StoreDir: filepath.Join(dir, "js")})
	require.NoError(t, err)
	defer srv.Shutdown()
	nc, err := srv.Connect()
	require.NoError(t, err)
	defer nc.Close()

	p, err := pipeline.Build(nc, rt, pipeline.Options{})
	require.NoError(t, err)
	assert.Equal(t, append(pipeline.Components, pipeline.Auditor), p.Names(), "a new setup has an audit section")

	p, err = pipeline.Build(nc, rt, pipeline.Options{Components: []string{"issuer", "policy"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"issuer", "policy"}, p.Names())

	_, err = pipeline.Build(nc, rt, pipeline.Options{Components: []string{"policy", "mailer"}})
	assert.ErrorContains(t, err, `unknown component "mailer"`)
	_, err = pipeline.Build(nc, rt, pipeline.Options{Components: []string{"policy", "notifier"}})
	assert.ErrorContains(t, err, "the notifier needs webhooks", "named, but no notify section")
	_, err = pipeline.Build(nc, rt, pipeline.Options{Components: []string{"policy", "policy"}})
	assert.ErrorContains(t, err, "named twice")

	// A component whose key the trust bundle does not list is refused.
	other := t.TempDir()
	_, err = config.Init(other, "acme")
	require.NoError(t, err)
	seed, err := os.ReadFile(filepath.Join(other, "keys", "issuer.nk"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "keys", "issuer.nk"), seed, 0o600))
	rt, err = cfg.Open()
	require.NoError(t, err)
	_, err = pipeline.Build(nc, rt, pipeline.Options{Components: []string{"issuer"}})
	assert.ErrorContains(t, err, "is not in the trust bundle")
}
