package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// docker-compose.yml describes what the README says: three NATS nodes with
// the full route list, every write on disk before it is acknowledged, a
// volume and a health check each; two Writ replicas on all three, whose
// command only uses flags `writ serve` has. `docker compose config` checks
// it too where the compose tool is installed.
func TestComposeFile(t *testing.T) {
	root := filepath.Join("..", "..")
	b, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	require.NoError(t, err)
	var c struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Build       any               `yaml:"build"`
			Command     []string          `yaml:"command"`
			Volumes     []string          `yaml:"volumes"`
			Environment map[string]string `yaml:"environment"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	require.NoError(t, yaml.Unmarshal(b, &c))

	conf, err := os.ReadFile(filepath.Join(root, "deploy", "nats.conf"))
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^\s*sync_interval:\s*always\s*$`, string(conf))
	assert.Regexp(t, `(?m)^include \./writ-auth\.conf$`, string(conf), "the nodes run in operator mode, with the setup's accounts")
	var nats, writs []string
	for name, s := range c.Services {
		switch {
		case strings.HasPrefix(s.Image, "nats:"):
			nats = append(nats, name)
			assert.Equal(t, name, s.Environment["SERVER_NAME"])
			assert.Contains(t, s.Volumes, name+":/data", "%s keeps its store in a volume", name)
			assert.Contains(t, c.Volumes, name)
			assert.NotEmpty(t, s.Healthcheck.Test, name)
			assert.Contains(t, string(conf), "nats-route://"+name+":6222", "every node routes to %s", name)
			assert.Contains(t, s.Volumes, "./deploy/writ-auth.conf:/etc/nats/writ-auth.conf:ro", "%s has the setup's authentication", name)
		case s.Build != nil:
			writs = append(writs, name)
			assert.NotEmpty(t, s.Healthcheck.Test, name)
			require.GreaterOrEqual(t, len(s.Command), 1)
			assert.Equal(t, "serve", s.Command[0])
			assert.Contains(t, strings.Join(s.Command, " "), "--creds /writ/creds/components.creds", "%s connects as the components", name)
			_, help, _ := writ(t, "serve", "--help")
			for _, arg := range s.Command[1:] {
				if f, ok := strings.CutPrefix(arg, "--"); ok {
					assert.Contains(t, help, "-"+f+" ", "writ serve has --%s", f)
				}
			}
			i := slices.Index(s.Command, "--server")
			require.GreaterOrEqual(t, i, 0)
			for _, n := range []string{"nats1", "nats2", "nats3"} {
				assert.Contains(t, s.Command[i+1], "nats://"+n+":4222")
			}
		}
	}
	slices.Sort(nats)
	assert.Equal(t, []string{"nats1", "nats2", "nats3"}, nats)
	assert.Len(t, writs, 2)

	compose := exec.Command("docker", "compose", "version")
	if compose.Run() != nil {
		t.Log("docker compose is not installed here: its own check of the file is skipped")
		return
	}
	out, err := exec.Command("docker", "compose", "-f", filepath.Join(root, "docker-compose.yml"), "config", "-q").CombinedOutput()
	require.NoError(t, err, string(out))
}
