package callout

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultPrefix is the first token of action subjects.
const DefaultPrefix = "act"

// ErrUnmappable is returned for a grant whose action or resource cannot be
// written as subject tokens.
var ErrUnmappable = errors.New("callout: the grant's action or resource has no subject")

// Subject is the one subject a grant of action on resource in domain allows
// publishing to: prefix.domain.action.<resource segments>, with "." inside
// a token written "%2E" (see the package documentation).
func Subject(prefix, domain, action, resource string) (string, error) {
	if err := validPrefix(prefix); err != nil {
		return "", err
	}
	parts := []string{prefix}
	for _, t := range append([]string{domain, action}, strings.Split(resource, "/")...) {
		tok, err := token(t)
		if err != nil {
			return "", err
		}
		parts = append(parts, tok)
	}
	return strings.Join(parts, "."), nil
}

// token escapes one subject token, refusing what no subject may hold.
func token(s string) (string, error) {
	if s == "" || len(s) > 256 {
		return "", fmt.Errorf("%w: empty or overlong token", ErrUnmappable)
	}
	if strings.Contains(s, "%") {
		return "", fmt.Errorf("%w: %q holds %%", ErrUnmappable, s)
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r == '*' || r == '>' {
			return "", fmt.Errorf("%w: %q holds a wildcard, a space or a control character", ErrUnmappable, s)
		}
	}
	return strings.ReplaceAll(s, ".", "%2E"), nil
}

func validPrefix(p string) error {
	if p == "" {
		return errors.New("callout: empty subject prefix")
	}
	for _, t := range strings.Split(p, ".") {
		if t == "" || strings.ContainsAny(t, "*> \t\r\n%") {
			return fmt.Errorf("callout: subject prefix %q is not literal subject tokens", p)
		}
	}
	return nil
}
