package events

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/google/uuid"
)

// Prefix is the first token of every audit subject.
const Prefix = "writ"

// ErrSubject is returned for a subject that is not writ.<domain>.<id>.<kind>.
var ErrSubject = errors.New("bad event subject")

// Subject returns the subject of an event: writ.<domain>.<request-id>.<kind>.
func Subject(domain, id string, k Kind) string {
	return Prefix + "." + domain + "." + id + "." + k.String()
}

// RequestFilter returns the filter that matches a request's whole history.
func RequestFilter(domain, id string) string {
	return Prefix + "." + domain + "." + id + ".>"
}

// KindFilter returns the filter for one kind across every domain and request.
func KindFilter(k Kind) string { return Prefix + ".*.*." + k.String() }

// ParseSubject splits an audit subject. The request id must be a UUID.
func ParseSubject(s string) (domain, id string, k Kind, err error) {
	parts := strings.Split(s, ".")
	if len(parts) != 4 || parts[0] != Prefix {
		return "", "", KindNone, fmt.Errorf("%w %q", ErrSubject, s)
	}
	// Only the canonical, lower-case spelling: one id, one subject.
	if u, err := uuid.Parse(parts[2]); err != nil || u.String() != parts[2] {
		return "", "", KindNone, fmt.Errorf("%w %q: request id is not a UUID", ErrSubject, s)
	}
	k, err = ParseKind(parts[3])
	if err != nil {
		return "", "", KindNone, fmt.Errorf("%w %q: %v", ErrSubject, s, err)
	}
	return parts[1], parts[2], k, nil
}

// MsgID returns the readable part of an event's Nats-Msg-Id: the request
// id, the kind and an ordinal that tells apart events of the same kind in
// one request ("" for kinds that happen once). Seal appends a tag made with
// the producer's key, so that only the producer can use the id.
func MsgID(id string, k Kind, ordinal string) string {
	if ordinal == "" {
		return id + "." + k.String()
	}
	return id + "." + k.String() + "." + ordinal
}

var resourcePath = regexp.MustCompile(`^[A-Za-z0-9_~:@-][A-Za-z0-9._~:@-]*(/[A-Za-z0-9_~:@-][A-Za-z0-9._~:@-]*)*$`)

// ValidResource reports whether s is a resource path with one spelling:
// segments joined by "/", none empty and none starting with a dot (so no
// "." or ".."), at most 512 bytes. The requested schema says the same.
func ValidResource(s string) bool { return len(s) <= 512 && resourcePath.MatchString(s) }
