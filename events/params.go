package events

import (
	"sort"
	"strconv"
	"strings"
)

// FormatParams writes a request's parameters for people, as every view of a
// request shows them (the CLI, notifications): key="value" pairs, sorted by
// key, each value quoted, so that a requester's values cannot reach an
// approver's screen as escape sequences, newlines or look-alike pairs.
func FormatParams(p map[string]string) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Quote(p[k])
	}
	return strings.Join(parts, " ")
}
