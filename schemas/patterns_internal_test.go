package schemas

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// samples are strings near each fast pattern's edges: right, one off in
// length, a character out of class, empty segments, a trailing newline.
var samples = []string{
	"", "\n", ".", "..", "a.b.c", "a.b.c\n", "a.b.", ".b.c", "a..c", "a.b.c.d", "a.b", "aZ0_-.x.y", "a.b.c=", "a.b.c ",
	"eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJYIn0.c2lnbmF0dXJl",
	"U" + strings.Repeat("A", 55), "U" + strings.Repeat("2", 55), "U" + strings.Repeat("A", 54), "U" + strings.Repeat("A", 56),
	"U" + strings.Repeat("A", 54) + "1", "U" + strings.Repeat("A", 54) + "8", "U" + strings.Repeat("a", 55), "X" + strings.Repeat("7", 55),
	"N" + strings.Repeat("Z", 55), "U" + strings.Repeat("A", 55) + "\n",
	"sha256:" + strings.Repeat("0", 64), "sha256:" + strings.Repeat("f", 64), "sha256:" + strings.Repeat("F", 64),
	"sha256:" + strings.Repeat("0", 63), "sha256:" + strings.Repeat("0", 65), "sha256:" + strings.Repeat("g", 64), "sha512:" + strings.Repeat("0", 64),
	"0190b7a4-0000-7000-8000-000000000001", "0190B7A4-0000-7000-8000-000000000001", "0190b7a4-0000-7000-8000-00000000001",
	"0190b7a4-0000-7000-8000_000000000001", "0190b7a40000-7000-8000-0000-00000001", "0190b7a4-0000-7000-8000-000000000001\n",
}

func TestFastPatternsAgreeWithRegexp(t *testing.T) {
	for p, match := range fastPatterns {
		re := regexp.MustCompile(p)
		for _, s := range samples {
			assert.Equal(t, re.MatchString(s), match(s), "%s on %q", p, s)
		}
	}
}

// Every fast pattern is one a schema holds: a pattern edited in a schema
// and not here would silently go back to regexp.
func TestFastPatternsAreTheSchemas(t *testing.T) {
	var all strings.Builder
	require.NoError(t, fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(path)
		all.Write(b)
		return err
	}))
	for p := range fastPatterns {
		quoted := strings.ReplaceAll(p, `\`, `\\`)
		assert.Contains(t, all.String(), `"pattern": "`+quoted+`"`, "a schema holds %s", p)
	}
}

func FuzzFastPatterns(f *testing.F) {
	for _, s := range samples {
		f.Add(s)
	}
	compiled := map[string]*regexp.Regexp{}
	for p := range fastPatterns {
		compiled[p] = regexp.MustCompile(p)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for p, match := range fastPatterns {
			if compiled[p].MatchString(s) != match(s) {
				t.Fatalf("%s on %q: regexp says %v", p, s, compiled[p].MatchString(s))
			}
		}
	})
}
