package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/access"
)

// calloutConf is a target server configured for auth callout (config
// mode): the responder's user in AUTH, its system-account user in SYS
// with the callout-system role's rights, granted users placed in APP.
const calloutConf = `
listen: "127.0.0.1:-1"
accounts {
  AUTH { users: [ { nkey: %[1]s } ] }
  APP {}
  SYS { users: [ { nkey: %[2]s, permissions: { publish: { allow: [%[3]s] }, subscribe: { allow: [%[4]s] } } } ] }
}
system_account: SYS
authorization {
  auth_callout {
    issuer: %[5]s
    account: AUTH
    auth_users: [ %[1]s, %[2]s ]
  }
}
`

// TestCalloutConnectionEndedByRevokeAndLock: with writ serve, a target
// server and writ callout running, the deploy bot connects to the target
// with its grant; 'writ revoke' of the redeemed grant is allowed and
// recorded, and closes the connection, as 'writ lock principal' closes the
// next one; the trail verifies. It logs how long each took, from the
// command's start to the connection's close.
func TestCalloutConnectionEndedByRevokeAndLock(t *testing.T) {
	dir, url := serve(t)
	keys := t.TempDir()
	seed := func(name string, create func() (nkeys.KeyPair, error)) (string, string) {
		kp, err := create()
		require.NoError(t, err)
		s, err := kp.Seed()
		require.NoError(t, err)
		path := filepath.Join(keys, name+".nk")
		require.NoError(t, os.WriteFile(path, s, 0o600))
		pub, _ := kp.PublicKey()
		return path, pub
	}
	signerFile, signerPub := seed("signer", nkeys.CreateAccount)
	authFile, authPub := seed("auth", nkeys.CreateUser)
	sysFile, sysPub := seed("system", nkeys.CreateUser)
	perms, err := access.Permissions(access.Scope{Domain: "acme", User: sysPub}, access.CalloutSystem)
	require.NoError(t, err)
	quoted := func(l []string) string { return `"` + strings.Join(l, `", "`) + `"` }
	conf := filepath.Join(keys, "target.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(calloutConf, authPub, sysPub, quoted(perms.Pub.Allow), quoted(perms.Sub.Allow), signerPub)), 0o600))
	opts, err := server.ProcessConfigFile(conf)
	require.NoError(t, err)
	opts.NoLog, opts.NoSigs = true, true
	target, err := server.NewServer(opts)
	require.NoError(t, err)
	go target.Start()
	require.True(t, target.ReadyForConnections(10*time.Second))
	t.Cleanup(func() { target.Shutdown(); target.WaitForShutdown() })

	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"callout", "--dir", dir, "--server", target.ClientURL(), "--nkey", authFile,
			"--system-nkey", sysFile, "--signer", signerFile, "--account", "APP", "--writ-server", url}, &out, &errOut)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, errOut.String())
		case <-time.After(20 * time.Second):
			t.Error("writ callout did not stop")
		}
	})
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "answering auth callout") }, 20*time.Second, 10*time.Millisecond,
		"writ callout is ready: %s", errOut.String())

	common := []string{"--dir", dir, "--server", url}
	creds := func(name string) string { return filepath.Join(dir, "creds", name+".creds") }
	bot, err := identity.LoadCreds(creds("deploy-bot"))
	require.NoError(t, err)
	botPub, _ := bot.Key.PublicKey()
	// connect asks for a grant and connects to the target with it.
	connect := func() (string, chan time.Time) {
		token, errOut, err := writ(t, append([]string{"request", "--creds", creds("deploy-bot"), "--action", "deploy", "--resource", "staging/web", "--wait"}, common...)...)
		require.NoError(t, err, errOut)
		token = strings.TrimSpace(token)
		verified, _, err := writ(t, "grant", "verify", token, "--dir", dir)
		require.NoError(t, err)
		id := ""
		for _, l := range strings.Split(verified, "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "request" {
				id = f[1]
			}
		}
		require.NotEmpty(t, id, verified)
		closed := make(chan time.Time, 1)
		nc, err := nats.Connect(target.ClientURL(), nats.Nkey(botPub, bot.Key.Sign), nats.Token(token), nats.NoReconnect(),
			nats.CustomInboxPrefix("_INBOX."+botPub), nats.ClosedHandler(func(*nats.Conn) { closed <- time.Now() }))
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		require.NoError(t, nc.Publish("act.acme.deploy.staging.web", []byte("go")))
		require.NoError(t, nc.Flush())
		return id, closed
	}
	ended := func(what string, began time.Time, returned time.Duration, closed chan time.Time) {
		t.Helper()
		select {
		case at := <-closed:
			took := at.Sub(began)
			t.Logf("%s: connection closed %s after the command started (the command returned after %s)", what, took.Round(time.Millisecond), returned.Round(time.Millisecond))
			assert.Less(t, took, time.Second, what)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the connection is still open", what)
		}
	}

	id, closed := connect()
	began := time.Now()
	stdout, stderr, err := writ(t, append([]string{"revoke", id, "--creds", creds("alice"), "--reason", "compromised host"}, common...)...)
	returned := time.Since(began)
	require.NoError(t, err, stderr)
	assert.Contains(t, stdout, "revoked "+id)
	ended("writ revoke", began, returned, closed)
	replay, _, err := writ(t, append([]string{"audit", "replay", "--request", id}, common...)...)
	require.NoError(t, err)
	assert.Less(t, strings.Index(replay, "redeemed"), strings.LastIndex(replay, "revoked"), "recorded after the redemption: %s", replay)

	_, closed = connect()
	began = time.Now()
	_, stderr, err = writ(t, append([]string{"lock", "principal", "acme/deploy-bot", "--creds", creds("alice"), "--reason", "stolen laptop"}, common...)...)
	returned = time.Since(began)
	require.NoError(t, err, stderr)
	ended("writ lock principal", began, returned, closed)

	_, stderr, err = writ(t, append([]string{"audit", "verify", "--strict"}, common...)...)
	require.NoError(t, err, stderr)
}
