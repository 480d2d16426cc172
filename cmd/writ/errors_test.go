package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A Go package's name before a colon ("identity: …", "client: …"), or a
// library's ("nats: …"): where an error came from in the code, which tells
// a user nothing.
var packagePrefix = regexp.MustCompile(`(^|: |\()(identity|client|request|config|redeem|grant|issuer|store|events|policy|locks|state|audit|consumers|pipeline|embedded|nats|jwt|nkeys):`)

// A parser's own words about bytes it could not read.
var parserText = regexp.MustCompile(`invalid character|looking for beginning of value|unexpected end of JSON|expected 3 chunks|illegal base64|\\u00`)

// The common failures a user meets, each an error in the user's words that
// says what to do next: no package prefix, no parser's text.
func TestErrorsInUsersWords(t *testing.T) {
	dir, url := serve(t)
	creds := func(name string) string { return filepath.Join(dir, "creds", name+".creds") }
	at := []string{"--dir", dir, "--server", url}
	garbage := filepath.Join(t.TempDir(), "garbage.creds")
	require.NoError(t, os.WriteFile(garbage, []byte("\x81\x00not creds"), 0o600))

	// carol's request waiting for two SRE leads.
	pending, _, err := writ(t, append([]string{"request", "--creds", creds("carol"), "--action", "restart", "--resource", "prod/db"}, at...)...)
	require.NoError(t, err)
	pending = strings.TrimSpace(pending)

	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string // in the message, in order
	}{
		{"creds file missing", []string{"request", "--creds", "missing.creds", "--action", "deploy", "--resource", "staging/web"}, 1,
			[]string{"credentials missing.creds: no such file or directory", "pass --creds", "writ identity issue"}},
		{"creds file garbage", []string{"request", "--creds", garbage, "--action", "deploy", "--resource", "staging/web"}, 1,
			[]string{"not a .creds file", "pass --creds"}},
		{"identity show garbage", []string{"identity", "show", "--creds", garbage}, 1,
			[]string{"not a .creds file"}},
		{"no setup", []string{"request", "--dir", filepath.Join(t.TempDir(), "none"), "--creds", creds("carol"), "--action", "deploy", "--resource", "staging/web"}, 1,
			[]string{"no Writ setup in", "writ init --dir", "pass --dir"}},
		{"no server", []string{"request", "--dir", dir, "--server", "nats://127.0.0.1:1", "--creds", creds("carol"), "--action", "deploy", "--resource", "staging/web"}, 1,
			[]string{"cannot reach NATS at nats://127.0.0.1:1", "is 'writ serve' running?"}},
		{"no permit", []string{"request", "--wait", "--creds", creds("carol"), "--action", "nuke", "--resource", "staging/web"}, exitNoGrant,
			[]string{"denied: no policy permits nuke on staging/web"}},
		{"forbid", []string{"request", "--wait", "--creds", creds("carol"), "--action", "drop-database", "--resource", "prod/db"}, exitNoGrant,
			[]string{"denied: forbidden by policy [no-prod-database-drop]"}},
		{"unknown domain", []string{"request", "--creds", creds("carol"), "--domain", "nope", "--action", "restart", "--resource", "prod/db"}, 1,
			[]string{`domain "nope" is not one this setup trusts`}},
		{"bad resource", []string{"request", "--creds", creds("carol"), "--action", "restart", "--resource", "prod//db"}, 1,
			[]string{`invalid request: resource "prod//db"`}},
		{"garbage token", []string{"grant", "verify", "\x81garbage"}, 1,
			[]string{"not a grant token", "does not decode"}},
		{"token with a garbage payload", []string{"grant", "verify", "eyJhbGciOiJlZDI1NTE5LW5rZXkiLCJ0eXAiOiJKV1QifQ.gA.gA"}, 1,
			[]string{"not a grant token"}},
		{"not an id", []string{"approve", "123", "--creds", creds("alice")}, 1,
			[]string{`"123" is not a request id`, "writ request"}},
		{"a wildcard for an id", []string{"request", "show", "*", "--domain", "acme"}, 1,
			[]string{`"*" is not a request id`}},
		{"no such request", []string{"approve", "8b0f5c1e-1111-4111-8111-111111111111", "--creds", creds("alice")}, 1,
			[]string{"no request 8b0f5c1e-1111-4111-8111-111111111111", "check the id"}},
		{"own request", []string{"approve", pending, "--creds", creds("carol")}, 1,
			[]string{"cannot approve " + pending, "requesters cannot answer their own request"}},
		{"not an approver", []string{"approve", pending, "--creds", creds("deploy-bot")}, 1,
			[]string{"cannot approve " + pending, "not an approver"}},
		{"lock not allowed", []string{"lock", "principal", "acme/bob", "--reason", "test", "--creds", creds("carol")}, 1,
			[]string{"lock principal acme/bob refused: not authorized: acme/carol may not lock"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(tc.args, at...)
			switch {
			case slices.Contains(tc.args, "--dir"):
				args = tc.args // a setup or server of its own
			case tc.args[0] == "grant" || tc.args[0] == "identity":
				args = append(tc.args, "--dir", dir) // no connection
			}
			_, _, err := writ(t, args...)
			require.Error(t, err)
			msg := err.Error()
			assert.Equal(t, tc.code, exitCode(err), msg)
			assert.NotRegexp(t, packagePrefix, msg)
			assert.NotRegexp(t, parserText, msg)
			rest := msg
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if !assert.GreaterOrEqual(t, i, 0, "%q in %q", w, msg) {
					break
				}
				rest = rest[i+len(w):]
			}
		})
	}
}
