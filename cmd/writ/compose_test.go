package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// composeInit is the 'writ init' that docker-compose.yml and the README
// tell to run before 'docker compose up': the setup the replicas read.
const composeInit = "go run ./cmd/writ init --dir deploy/writ --replicas 3 --server-config deploy/writ-auth.conf --auth-only"

// composeFile is what the tests read of docker-compose.yml.
type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       any               `yaml:"build"`
		User        string            `yaml:"user"`
		Command     []string          `yaml:"command"`
		Volumes     []string          `yaml:"volumes"`
		Ports       []string          `yaml:"ports"`
		Environment map[string]string `yaml:"environment"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

func readCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docker-compose.yml"))
	require.NoError(t, err)
	var c composeFile
	require.NoError(t, yaml.Unmarshal(b, &c))
	return c
}

// docker-compose.yml describes what the README says: three NATS nodes of the
// nats-server release Writ embeds, with the full route list, every write on
// disk before it is acknowledged, a volume and a health check each; two Writ
// replicas on all three, run as the owner of the setup they mount, whose
// command only uses flags `writ serve` has. The compose tool checks it too
// where it is installed (not here: 'docker compose config' was run by hand
// with docker-compose 1.29.2, see the README).
func TestComposeFile(t *testing.T) {
	root := filepath.Join("..", "..")
	c := readCompose(t)

	conf, err := os.ReadFile(filepath.Join(root, "deploy", "nats.conf"))
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^\s*sync_interval:\s*always\s*$`, string(conf))
	assert.Regexp(t, `(?m)^include \./writ-auth\.conf$`, string(conf), "the nodes run in operator mode, with the setup's accounts")
	assert.Regexp(t, `(?m)^\s*domain:\s*acme\s*$`, string(conf), "the JetStream domain is the setup's: composeInit names no --domain, so acme")

	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^\s*github\.com/nats-io/nats-server/v2 v(\S+)$`).FindSubmatch(gomod)
	require.NotNil(t, m, "go.mod requires nats-server")
	natsImage := "nats:" + string(m[1]) + "-alpine"

	var nats, writs []string
	for name, s := range c.Services {
		switch {
		case strings.HasPrefix(s.Image, "nats:"):
			nats = append(nats, name)
			assert.Equal(t, natsImage, s.Image, "%s runs the nats-server Writ embeds and tests against", name)
			assert.Equal(t, name, s.Environment["SERVER_NAME"])
			assert.Contains(t, s.Volumes, name+":/data", "%s keeps its store in a volume", name)
			assert.Contains(t, c.Volumes, name)
			assert.NotEmpty(t, s.Healthcheck.Test, name)
			assert.Contains(t, string(conf), "nats-route://"+name+":6222", "every node routes to %s", name)
			assert.Contains(t, s.Volumes, "./deploy/nats.conf:/etc/nats/nats.conf:ro")
			assert.Contains(t, s.Volumes, "./deploy/writ-auth.conf:/etc/nats/writ-auth.conf:ro", "%s has the setup's authentication", name)
			for _, p := range s.Ports {
				assert.True(t, strings.HasPrefix(p, "127.0.0.1:"), "%s publishes %s on loopback only", name, p)
			}
		case s.Build != nil:
			writs = append(writs, name)
			assert.NotEmpty(t, s.Healthcheck.Test, name)
			assert.Regexp(t, `^\$\{WRIT_UID:\?[^}]+\}:\$\{WRIT_GID:\?[^}]+\}$`, s.User,
				"%s runs as the owner of deploy/writ, and not at all without WRIT_UID and WRIT_GID", name)
			assert.Equal(t, []string{"./deploy/writ:/writ:ro"}, s.Volumes, "%s reads the setup, writes nothing to it", name)
			require.GreaterOrEqual(t, len(s.Command), 1)
			assert.Equal(t, "serve", s.Command[0])
			assert.Equal(t, "/writ", flagValue(s.Command, "--dir"), "%s serves the mounted setup", name)
			assert.Equal(t, "/writ/creds/components.creds", flagValue(s.Command, "--creds"), "%s connects as the components", name)
			help, _, err := writ(t, "serve", "--help")
			require.NoError(t, err)
			for _, arg := range s.Command[1:] {
				if f, ok := strings.CutPrefix(arg, "--"); ok {
					assert.Contains(t, help, "\n  --"+f+" ", "writ serve has --%s", f)
				}
			}
			for _, n := range []string{"nats1", "nats2", "nats3"} {
				assert.Contains(t, flagValue(s.Command, "--server"), "nats://"+n+":4222")
			}
		}
	}
	slices.Sort(nats)
	assert.Equal(t, []string{"nats1", "nats2", "nats3"}, nats)
	assert.Len(t, writs, 2)
	assert.Contains(t, composeInit, fmt.Sprintf("--replicas %d", len(nats)), "a replica of each stream on each node")

	// The same 'writ init' in every place that tells it.
	for _, f := range []string{"docker-compose.yml", "README.md"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		require.NoError(t, err)
		assert.Contains(t, string(b), composeInit, "%s tells the 'writ init' this test runs", f)
	}

	// What 'writ init' writes for compose stays out of git and out of the
	// image's build context: it holds secret keys.
	ignore, err := os.ReadFile(filepath.Join(root, ".gitignore"))
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^/deploy/writ/$`, string(ignore))
	assert.Regexp(t, `(?m)^/deploy/writ-auth\.conf$`, string(ignore))
	if out, err := exec.Command("git", "-C", root, "check-ignore", "deploy/writ/keys/account.nk", "deploy/writ-auth.conf").CombinedOutput(); err == nil {
		assert.Equal(t, "deploy/writ/keys/account.nk\ndeploy/writ-auth.conf\n", string(out))
	}
	dockerignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	require.NoError(t, err)
	for _, p := range []string{".writ", "deploy/writ", "**/*.creds", "**/*.nk"} {
		assert.Regexp(t, `(?m)^`+regexp.QuoteMeta(p)+`$`, string(dockerignore))
	}

	tool := composeTool()
	if tool == nil {
		t.Log("neither 'docker compose' nor docker-compose is installed here: the compose tool's own check of the file is skipped")
		return
	}
	file := filepath.Join(root, "docker-compose.yml")
	check := exec.Command(tool[0], append(tool[1:], "-f", file, "config", "-q")...)
	check.Env = append(os.Environ(), "WRIT_UID=1000", "WRIT_GID=1000")
	out, err := check.CombinedOutput()
	require.NoError(t, err, string(out))
	refused := exec.Command(tool[0], append(tool[1:], "-f", file, "config", "-q")...)
	refused.Env = slices.DeleteFunc(os.Environ(), func(s string) bool { return strings.HasPrefix(s, "WRIT_UID=") || strings.HasPrefix(s, "WRIT_GID=") })
	out, err = refused.CombinedOutput()
	assert.Error(t, err, "without WRIT_UID the file does not start")
	assert.Contains(t, string(out), "set WRIT_UID and WRIT_GID to the owner of deploy/writ")
}

// composeTool is the compose command installed here, if any.
func composeTool() []string {
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if exec.Command("docker-compose", "version").Run() == nil {
		return []string{"docker-compose"}
	}
	return nil
}

// flagValue is the argument after name in args, or "".
func flagValue(args []string, name string) string {
	if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// 'writ init' for compose prints the hints that apply to it: no embedded
// server to start ('writ serve --dir … listens there'), a file to include
// rather than run, and who the replicas must run as.
func TestComposeInitHints(t *testing.T) {
	root := t.TempDir()
	args := strings.Fields(strings.TrimPrefix(composeInit, "go run ./cmd/writ "))
	for i, a := range args {
		if strings.HasPrefix(a, "deploy/") {
			args[i] = filepath.Join(root, a)
		}
	}
	out, _, err := writ(t, args...)
	require.NoError(t, err)
	assert.NotContains(t, out, "listens there", "no embedded server serves this setup")
	assert.NotContains(t, out, "nats-server -c", "the file is included by a node's configuration, not run")
	assert.Contains(t, out, "include it from each node's configuration")
	assert.Contains(t, out, fmt.Sprintf("export WRIT_UID=%d WRIT_GID=%d", os.Getuid(), os.Getgid()))
	assert.Contains(t, out, "--server URL")

	// A setup for the embedded server still says where it listens.
	out, _, err = writ(t, "init", "--dir", filepath.Join(root, "local"), "--port", "14999")
	require.NoError(t, err)
	assert.Contains(t, out, "nats://127.0.0.1:14999 ('writ serve --dir")
	assert.NotContains(t, out, "WRIT_UID")
}
