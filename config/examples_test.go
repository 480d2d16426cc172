package config_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/policy"
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

// The advanced flow example parses, and uses every feature.
func TestAdvancedFlowsExampleLoads(t *testing.T) {
	flows, err := policy.LoadFlowsFile(filepath.Join("..", "examples", "flows-advanced.json"))
	require.NoError(t, err)
	resolved, _, err := flows.Resolve([]string{"prod-change", "schema-change", "two-sre-leads", "owner-twice"}, time.Now())
	require.NoError(t, err)
	byName := map[string]events.Flow{}
	for _, f := range resolved {
		byName[f.Name] = f
	}
	assert.Len(t, byName["prod-change"].Stages, 2)
	assert.NotNil(t, byName["prod-change"].Stages[0].Escalate)
	assert.True(t, byName["schema-change"].Stages[0].AllGroups)
	assert.Equal(t, 2, byName["schema-change"].DenyQuorum)
	assert.True(t, byName["owner-twice"].RepeatApprovers)
}
