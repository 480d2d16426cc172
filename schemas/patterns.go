package schemas

import (
	"regexp"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// fastPatterns match, by hand, the patterns the schemas hold for long or
// frequent strings: every request carries its requester's JWT, every event
// digests and keys. Go's regexp spends some 20 ns a character on them, and
// validation was most of the cost of reading an event. Each matches
// exactly what its pattern does (TestFastPatternsAgreeWithRegexp,
// FuzzFastPatterns); any other pattern is left to regexp.
var fastPatterns = map[string]func(string) bool{
	`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`: isJWTShape,
	`^U[A-Z2-7]{55}$`:          isKey('U'),
	`^X[A-Z2-7]{55}$`:          isKey('X'),
	`^N[A-Z2-7]{55}$`:          isKey('N'),
	`^sha256:[0-9a-f]{64}$`:    isDigest,
	`^(sha256:[0-9a-f]{64})?$`: func(s string) bool { return s == "" || isDigest(s) },
	`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`: isUUID,
}

// compilePattern is the schemas' regexp engine.
func compilePattern(p string) (jsonschema.Regexp, error) {
	if m, ok := fastPatterns[p]; ok {
		return fastPattern{p, m}, nil
	}
	return regexp.Compile(p)
}

type fastPattern struct {
	pattern string
	match   func(string) bool
}

func (f fastPattern) MatchString(s string) bool { return f.match(s) }
func (f fastPattern) String() string            { return f.pattern }

// isJWTShape: three non-empty base64url segments, dot-separated.
func isJWTShape(s string) bool {
	dots, run := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.':
			if run == 0 {
				return false
			}
			dots, run = dots+1, 0
		case isBase64URL(c):
			run++
		default:
			return false
		}
	}
	return dots == 2 && run > 0
}

func isBase64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// isKey: an nkey of the given prefix, in shape (prefix and 55 base32
// characters).
func isKey(prefix byte) func(string) bool {
	return func(s string) bool {
		if len(s) != 56 || s[0] != prefix {
			return false
		}
		for i := 1; i < len(s); i++ {
			if c := s[i]; !('A' <= c && c <= 'Z' || '2' <= c && c <= '7') {
				return false
			}
		}
		return true
	}
}

func isDigest(s string) bool {
	const p = "sha256:"
	return len(s) == len(p)+64 && s[:len(p)] == p && isLowerHex(s[len(p):])
}

func isUUID(s string) bool {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	return isLowerHex(s[:8]) && isLowerHex(s[9:13]) && isLowerHex(s[14:18]) && isLowerHex(s[19:23]) && isLowerHex(s[24:])
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
