package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/config"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/identity/connect"
)

// oldSetup turns a new setup into one made before roles existed: no server
// keys, no service creds, principals' JWTs without permissions.
func oldSetup(t *testing.T, dir string) {
	t.Helper()
	for _, f := range []string{config.NATSOperatorSeed, config.NATSSystemSeed, config.OperatorCreds, config.ReaderCreds, config.RedeemerCreds, config.ComponentsCreds} {
		require.NoError(t, os.Remove(filepath.Join(dir, f)))
	}
	account, err := identity.LoadSeed(filepath.Join(dir, config.AccountSeed))
	require.NoError(t, err)
	for _, s := range config.SampleIdentities {
		path := filepath.Join(dir, "creds", s.Name+".creds")
		old, err := identity.LoadCreds(path)
		require.NoError(t, err)
		creds, err := identity.IssueUser(account, identity.UserSpec{Domain: "acme", Name: s.Name, Groups: s.Groups, TTL: time.Hour, User: old.Key})
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, creds, 0o600))
	}
}

// A setup made by an earlier 'writ init' is refused with the one command
// that upgrades it, never served open; after it, the same principals'
// keys (re-signed, with their roles) work.
func TestUpgradeAnOldSetup(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "old")
	_, _, err := writ(t, "init", "--dir", dir)
	require.NoError(t, err)
	oldSetup(t, dir)
	carolBefore, err := identity.LoadCreds(filepath.Join(dir, "creds", "carol.creds"))
	require.NoError(t, err)

	_, _, err = writ(t, "serve", "--dir", dir, "--port", "-1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "writ init --upgrade --dir "+dir)

	out, _, err := writ(t, "init", "--upgrade", "--dir", dir)
	require.NoError(t, err)
	assert.Contains(t, out, "carol.creds")
	carol, err := identity.LoadCreds(filepath.Join(dir, "creds", "carol.creds"))
	require.NoError(t, err)
	assert.Equal(t, carolBefore.Principal.Key, carol.Principal.Key, "the user key is kept")
	assert.NotEqual(t, carolBefore.JWT, carol.JWT, "and signed again, with a role")
	out, _, err = writ(t, "init", "--upgrade", "--dir", dir)
	require.NoError(t, err)
	assert.Contains(t, out, "nothing to do")

	ctx, cancel := context.WithCancel(context.Background())
	var sout, serr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--dir", dir, "--port", "-1", "--log-level", "warn"}, &sout, &serr)
	}()
	require.Eventually(t, func() bool { return strings.Contains(sout.String(), "Ctrl-C stops") }, 15*time.Second, 20*time.Millisecond, serr.String())
	url := urlOf(t, sout.String())
	stdout, errText, err := writ(t, "request", "--dir", dir, "--server", url, "--creds", filepath.Join(dir, "creds", "deploy-bot.creds"),
		"--action", "deploy", "--resource", "staging/api", "--wait")
	require.NoError(t, err, errText)
	assert.NotEmpty(t, strings.TrimSpace(stdout))
	cancel()
	require.NoError(t, <-done)
}

// urlOf is the NATS URL serve said it listens on.
func urlOf(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`listening on (nats://[0-9.:]+)`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	return m[1]
}

// operatorConn connects the test to a setup's NATS with the operator's
// creds: tests read and tamper with what no other role may touch.
func operatorConn(t *testing.T, dir, url string, opts ...nats.Option) (*nats.Conn, error) {
	t.Helper()
	copts, err := connect.Creds(filepath.Join(dir, config.OperatorCreds))
	require.NoError(t, err)
	return nats.Connect(url, append(copts, opts...)...)
}
