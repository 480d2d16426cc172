//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity"
)

// The files the containers will read, as composeInit writes them: every
// one exists where docker-compose.yml mounts it; the writ replicas' (the
// setup, its keys, the components' creds) are owned by whoever ran
// 'writ init', the secret ones mode 0600 in directories mode 0700; the NATS
// nodes' authentication holds no secret. Run as root (CI is), it runs that
// 'writ init' as another user, as a developer's machine would, and then
// reads the setup as the replicas do: as that user (WRIT_UID:WRIT_GID) it
// loads, as the image's own user (uid 10001) or another user of the same
// group it is refused: nothing was opened to them.
func TestComposeSetup(t *testing.T) {
	c := readCompose(t)
	root := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(root, "deploy"), 0o755))
	args := strings.Fields(strings.TrimPrefix(composeInit, "go run ./cmd/writ "))
	for i, a := range args {
		if strings.HasPrefix(a, "deploy/") {
			args[i] = filepath.Join(root, a)
		}
	}
	owner := [2]int{os.Getuid(), os.Getgid()}
	asRoot := owner[0] == 0
	var bin string
	if asRoot {
		// A developer's machine: a user of its own ran 'writ init'.
		owner = [2]int{4321, 4321}
		if !strings.HasPrefix(root, filepath.Clean(os.TempDir())+string(filepath.Separator)) {
			t.Skipf("%s is not under %s: the test would have to open directories of its own to other users", root, os.TempDir())
		}
		for d := root; d != filepath.Clean(os.TempDir()); d = filepath.Dir(d) {
			require.NoError(t, os.Chmod(d, 0o755)) // the test's own directories, to reach root
		}
		require.NoError(t, os.Chown(filepath.Join(root, "deploy"), owner[0], owner[1]))
		bin = filepath.Join(root, "writ.test")
		copyFile(t, os.Args[0], bin, 0o755)
		out, err := helper(bin, "init", owner, args...)
		require.NoError(t, err, out)
	} else {
		_, _, err := writ(t, args...)
		require.NoError(t, err)
	}

	host := func(volume string) string { // ./deploy/x:/y:ro → root/deploy/x
		src, _, _ := strings.Cut(volume, ":")
		if strings.HasPrefix(src, "./deploy/writ") {
			return filepath.Join(root, src)
		}
		return filepath.Join("..", "..", src) // in the repository: deploy/nats.conf
	}
	var setupDir, inContainer string
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			if !strings.HasPrefix(v, "./") {
				continue
			}
			_, err := os.Stat(host(v))
			require.NoError(t, err, "%s mounts %s: composeInit or the repository makes it", name, v)
			if s.Build != nil {
				parts := strings.Split(v, ":")
				setupDir, inContainer = host(v), parts[1]
			}
		}
	}
	require.NotEmpty(t, setupDir)

	// The writ replicas' files: all the configuration names, and the creds
	// on their command line.
	cfg, err := config.Load(setupDir)
	require.NoError(t, err)
	_, err = cfg.Open()
	require.NoError(t, err)
	assert.Equal(t, 3, cfg.Stream.Replicas)
	var command []string
	for _, s := range c.Services {
		if s.Build != nil {
			command = s.Command
		}
	}
	creds := filepath.Join(setupDir, strings.TrimPrefix(flagValue(command, "--creds"), inContainer+"/"))
	secret := []string{creds}
	for _, k := range []string{cfg.Keys.Policy, cfg.Keys.Approval, cfg.Keys.Issuer, cfg.Keys.IssuerXKey, cfg.Keys.Redeemer, cfg.Keys.Auditor} {
		require.NotEmpty(t, k)
		secret = append(secret, cfg.Path(k))
	}
	public := []string{filepath.Join(setupDir, config.FileName), cfg.Path(cfg.Trust), cfg.Path(cfg.Flows)}
	policies, err := filepath.Glob(filepath.Join(cfg.Path(cfg.Policies), "*.cedar"))
	require.NoError(t, err)
	require.NotEmpty(t, policies)
	public = append(public, policies...)

	for _, f := range append(slices.Clone(secret), public...) {
		fi, err := os.Stat(f)
		require.NoError(t, err)
		st := fi.Sys().(*syscall.Stat_t)
		assert.Equal(t, owner, [2]int{int(st.Uid), int(st.Gid)}, "%s belongs to who ran 'writ init'", f)
		assert.Zero(t, fi.Mode().Perm()&0o022, "%s: nobody else may change it", f)
	}
	for _, f := range secret {
		fi, err := os.Stat(f)
		require.NoError(t, err)
		assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm(), "%s is secret: its owner's alone", f)
		di, err := os.Stat(filepath.Dir(f))
		require.NoError(t, err)
		assert.Equal(t, fs.FileMode(0o700), di.Mode().Perm(), "%s's directory", f)
	}
	// The nodes' authentication: JWTs and public keys, no seed.
	auth, err := os.ReadFile(filepath.Join(root, "deploy", "writ-auth.conf"))
	require.NoError(t, err)
	assert.Empty(t, nkeySeeds(string(auth)), "no nkey seed in the nodes' authentication")

	if !asRoot {
		t.Log("not root: reading the setup as other users is skipped")
		return
	}
	// As the replicas run it: the owner's uid and gid.
	out, err := helper(bin, "read", owner, setupDir, creds)
	require.NoError(t, err, "as WRIT_UID:WRIT_GID the replica reads its setup: %s", out)
	assert.Contains(t, out, "read the setup")
	for _, who := range [][2]int{{10001, 10001}, {owner[0] + 1, owner[1]}} {
		out, err := helper(bin, "read", who, setupDir, creds)
		require.Error(t, err, "uid %d gid %d reads nothing of the setup", who[0], who[1])
		assert.Contains(t, out, "permission denied")
	}
}

// helper runs this test binary as uid:gid, in TestComposeHelper's role.
func helper(bin, role string, as [2]int, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run=^TestComposeHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "WRIT_COMPOSE_HELPER="+role, "WRIT_COMPOSE_ARGS="+strings.Join(args, "\x1f"))
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(as[0]), Gid: uint32(as[1])}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestComposeHelper is TestComposeSetup's other user: it runs 'writ init'
// (init), or reads a setup as 'writ serve --server' does (read: the
// configuration, everything it names, the creds). It does nothing in a
// test run of its own.
func TestComposeHelper(t *testing.T) {
	role := os.Getenv("WRIT_COMPOSE_HELPER")
	if role == "" {
		return
	}
	args := strings.Split(os.Getenv("WRIT_COMPOSE_ARGS"), "\x1f")
	switch role {
	case "init":
		if err := run(context.Background(), args, io.Discard, io.Discard); err != nil {
			fmt.Println("init:", err)
			os.Exit(1)
		}
	case "read":
		err := func() error {
			cfg, err := config.Load(args[0])
			if err != nil {
				return err
			}
			if _, err := cfg.Open(); err != nil {
				return err
			}
			_, err = identity.LoadCreds(args[1])
			return err
		}()
		if err != nil {
			fmt.Println("read:", err, errors.Is(err, fs.ErrPermission))
			os.Exit(1)
		}
		fmt.Println("read the setup")
	}
}

func copyFile(t *testing.T, from, to string, mode fs.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, b, mode))
}

// nkeySeeds returns the nkey seeds in text: whole words of 58 base32
// characters that decode as a seed with a valid checksum. A looser pattern
// (an S followed by base32) also matches inside public keys and JWTs.
func nkeySeeds(text string) []string {
	var seeds []string
	for _, w := range regexp.MustCompile(`[A-Z2-7]+`).FindAllString(text, -1) {
		if len(w) != 58 || w[0] != 'S' {
			continue
		}
		if _, err := nkeys.FromSeed([]byte(w)); err == nil {
			seeds = append(seeds, w)
		}
	}
	return seeds
}

func TestNkeySeedsFindsSeedsOnly(t *testing.T) {
	kp, err := nkeys.CreateAccount()
	require.NoError(t, err)
	seed, err := kp.Seed()
	require.NoError(t, err)
	pub, err := kp.PublicKey()
	require.NoError(t, err)
	// A public key beginning "AS…" holds an S followed by 54 base32 characters.
	text := "ADSUNZZG6YJXYUL6RV6XJAWIB6IKOWKLPGU5CLT2NLVXIKRS6NJJA5BX: " + pub + "\n"
	assert.Empty(t, nkeySeeds(text), "public keys are not seeds")
	assert.Equal(t, []string{string(seed)}, nkeySeeds(text+"  seed: "+string(seed)+"\n"))
}
