package layout

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const module = "github.com/writ-dev/writ"

// models are the packages that describe what Writ decides, with no I/O:
// they must build and be tested without a NATS connection.
var models = []string{"events", "request", "series", "policy", "issuer", "identity", "schemas"}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = root(t)
	out, err := cmd.Output()
	require.NoError(t, err, "go list %s", strings.Join(args, " "))
	return strings.Fields(string(out))
}

func root(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	require.NoError(t, err)
	return filepath.Join(wd, "..", "..")
}

func TestModelPackagesImportNoNATS(t *testing.T) {
	for _, m := range models {
		for _, dep := range goList(t, "-deps", module+"/"+m) {
			for _, banned := range []string{"github.com/nats-io/nats.go", "github.com/nats-io/nats-server"} {
				assert.False(t, dep == banned || strings.HasPrefix(dep, banned+"/"),
					"%s depends on %s: the model packages know nothing of NATS", m, dep)
			}
		}
	}
}

// TestReadmeMapsEveryPackage keeps the README's package map whole: every
// package of the module (but tests' helpers and examples) has its row.
func TestReadmeMapsEveryPackage(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(root(t), "README.md"))
	require.NoError(t, err)
	for _, p := range goList(t, "./...") {
		rel := strings.TrimPrefix(strings.TrimPrefix(p, module), "/")
		if strings.HasPrefix(rel, "examples/") {
			continue
		}
		assert.Contains(t, string(readme), "| `"+rel+"` |", "the README's Layout table has no row for %s", rel)
	}
}
