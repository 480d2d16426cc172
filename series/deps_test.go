package series_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestModelDeps: the folds are a model package, as request is: they depend
// on nothing request does not (no NATS connection, no store), directly or
// not.
func TestModelDeps(t *testing.T) {
	deps := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-deps", "github.com/writ-dev/writ/"+pkg).Output()
		require.NoError(t, err)
		return strings.Fields(string(out))
	}
	model := deps("request")
	for _, p := range deps("series") {
		if p != "github.com/writ-dev/writ/series" {
			require.True(t, slices.Contains(model, p), "series depends on %s, which request does not", p)
		}
	}
}
