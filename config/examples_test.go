package config_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
)

// The files in examples/ are what `writ init` writes; this keeps them so.
func TestExamplesMatchInit(t *testing.T) {
	dir := t.TempDir()
	_, err := config.Init(dir, "acme")
	require.NoError(t, err)
	for _, f := range []string{"writ.json", "flows.json", filepath.Join("policies", "main.cedar")} {
		want, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join("..", "examples", f))
		require.NoError(t, err)
		assert.Equal(t, string(want), string(got), "examples/%s differs from what writ init writes", f)
	}
}
