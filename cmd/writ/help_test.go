package main

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// helpCommands is every command line that has a help of its own: each
// command, and each subcommand with flags of its own.
var helpCommands = [][]string{
	{"init"}, {"serve"}, {"request"}, {"request", "show"}, {"approvals"}, {"approvals", "watch"}, {"approvals", "list"},
	{"approve"}, {"deny"}, {"revoke"}, {"lock"}, {"unlock"}, {"state"},
	{"grant"}, {"grant", "show"}, {"grant", "verify"}, {"grant", "redeem"},
	{"audit"}, {"audit", "replay"}, {"audit", "verify"}, {"audit", "checkpoint"}, {"audit", "export"}, {"audit", "deadletter"},
	{"trust"}, {"trust", "add"}, {"trust", "list"}, {"trust", "remove"}, {"trust", "revoke"},
	{"identity"}, {"identity", "issue"}, {"identity", "show"}, {"identity", "revoke"},
	{"callout"}, {"bench"},
}

// A single-dash flag (-creds): the flag package's own style, which Writ
// does not print. A negative number (-1) is not a flag.
var singleDash = regexp.MustCompile(`(^|[\s(\[|,'])-[a-zA-Z][a-zA-Z-]*`)

// Every command's --help (and -h, and 'writ help COMMAND') prints its usage
// and flags on standard output, nothing on standard error, and succeeds, so
// that 'writ X --help | less' works; every flag is written --flag, in the
// usage lines as in the flag lists; and every --flag a usage line names is
// one the command has.
func TestHelpOnStdout(t *testing.T) {
	var names []string
	for _, c := range helpCommands {
		if len(c) == 1 {
			names = append(names, c[0])
		}
	}
	for _, c := range commands() {
		assert.Contains(t, names, c.name, "command %s has a help test", c.name)
	}

	for _, c := range helpCommands {
		t.Run(strings.Join(c, " "), func(t *testing.T) {
			for _, h := range []string{"--help", "-h"} {
				out, errOut, err := writ(t, append(slices.Clone(c), h)...)
				require.NoError(t, err, "%s exits 0", h)
				assert.Empty(t, errOut, "%s prints nothing on standard error", h)
				require.NotEmpty(t, out)
				first, _, _ := strings.Cut(out, "\n")
				assert.Contains(t, first, "writ "+c[0])
				assert.Contains(t, first, c[len(c)-1])
				for i, line := range strings.Split(out, "\n") {
					assert.NotRegexp(t, singleDash, line, "line %d: flags are written --flag", i+1)
				}
				if !slices.Contains([]string{"grant", "trust", "identity", "audit"}, c[0]) || len(c) > 1 {
					assert.Contains(t, out, "Flags:\n", "%s lists its flags", c)
				}
				// Every --flag of a usage line is listed.
				listed := map[string]bool{}
				for _, m := range regexp.MustCompile(`(?m)^  --([a-z-]+)`).FindAllStringSubmatch(out, -1) {
					listed[m[1]] = true
				}
				for _, line := range strings.Split(out, "\n") {
					if !strings.HasPrefix(line, "Usage: ") || len(listed) == 0 {
						continue
					}
					for _, m := range regexp.MustCompile(`--([a-z-]+)`).FindAllStringSubmatch(line, -1) {
						assert.True(t, listed[m[1]], "the usage line names --%s, which is not in the flag list:\n%s", m[1], out)
					}
				}
			}
			out, _, err := writ(t, append([]string{"help"}, c...)...)
			require.NoError(t, err)
			first, _, _ := strings.Cut(out, "\n")
			assert.Contains(t, first, c[len(c)-1])
		})
	}

	for _, h := range []string{"--help", "-h", "help"} {
		out, errOut, err := writ(t, h)
		require.NoError(t, err)
		assert.Empty(t, errOut)
		assert.Contains(t, out, "Usage: writ <command> [flags]")
		assert.NotRegexp(t, singleDash, out)
	}
}

// The help lists what each command has: grant and approvals the flags of
// their subcommands, request --domain as optional, serve the auditor.
func TestHelpContents(t *testing.T) {
	out, _, err := writ(t, "grant", "--help")
	require.NoError(t, err)
	for _, want := range []string{"Usage: writ grant show", "Usage: writ grant verify", "Usage: writ grant redeem", "--leeway", "--redeemer-creds", "--param"} {
		assert.Contains(t, out, want)
	}
	out, _, err = writ(t, "approvals", "--help")
	require.NoError(t, err)
	for _, want := range []string{"--creds", "--once", "--json", "--domain"} {
		assert.Contains(t, out, want)
	}
	out, _, err = writ(t, "request", "--help")
	require.NoError(t, err)
	usage, _, _ := strings.Cut(out, "\n")
	assert.Contains(t, usage, "[--domain D]", "--domain is optional: the requester's own domain by default")
	assert.NotRegexp(t, `[^\[]--domain`, usage)
	out, _, err = writ(t, "serve", "--help")
	require.NoError(t, err)
	assert.Contains(t, out, "auditor")
}

// A flag the command does not have, or a value that does not parse, is one
// line: what is wrong and where the help is; no usage dump, exit status 2.
func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"request", "--bogus"}, "unknown flag --bogus; see 'writ request --help'"},
		{[]string{"request", "-bogus"}, "unknown flag --bogus; see 'writ request --help'"},
		{[]string{"approvals", "list", "--bogus=1"}, "unknown flag --bogus; see 'writ approvals list --help'"},
		{[]string{"grant", "verify", "x", "--leeway", "soon"}, `--leeway "soon": want a duration such as 90s, 15m or 2h; see 'writ grant verify --help'`},
		{[]string{"init", "--port", "many"}, `--port "many": want a whole number; see 'writ init --help'`},
		{[]string{"serve", "--sync=perhaps"}, `--sync "perhaps": want true or false; see 'writ serve --help'`},
		{[]string{"request", "--action"}, "--action needs a value; see 'writ request --help'"},
		{[]string{"bogus"}, `unknown command "bogus"; 'writ --help' lists the commands`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errOut, err := writ(t, tc.args...)
			require.Error(t, err)
			assert.Equal(t, tc.want, err.Error())
			assert.Equal(t, exitUsage, exitCode(err))
			assert.Empty(t, out)
			assert.Empty(t, errOut, "the error alone, printed once by main")
		})
	}
}

// Flags go before or after the arguments, in either style, and "--" ends
// them.
func TestParseFlags(t *testing.T) {
	fs := newFlags("test", "test", nil)
	n := fs.Int("n", 0, "")
	b := fs.Bool("b", false, "")
	s := fs.String("s", "", "")
	pos, err := parse(fs, []string{"a", "--n", "-1", "-b", "--s=x=y", "-", "--", "--n"})
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "-", "--n"}, pos)
	assert.Equal(t, -1, *n)
	assert.True(t, *b)
	assert.Equal(t, "x=y", *s)
}
