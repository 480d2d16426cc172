package consumers

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSettledEvaluation(t *testing.T) {
	const id = "01931b6e-7c3a-7b9a-8f00-000000000001"
	evaluated := "writ.acme." + id + ".evaluated"
	for _, tc := range []struct {
		name    string
		subject string
		body    string
		want    bool
	}{
		{"allowed", evaluated, `{"data":{"outcome":"allow"}}`, true},
		{"denied", evaluated, `{"data":{"outcome":"deny"}}`, true},
		{"needs approvers", evaluated, `{"data":{"outcome":"review","flows":[{}]}}`, false},
		{"break-glass: a review after the fact", evaluated, `{"data":{"outcome":"allow","break_glass":true}}`, false},
		{"no outcome", evaluated, `{"data":{}}`, false},
		{"not JSON", evaluated, `{"data":`, false},
		{"a vote", "writ.acme." + id + ".voted", `{"data":{"outcome":"allow"}}`, false},
		{"not an event subject", "elsewhere", `{"data":{"outcome":"allow"}}`, false},
	} {
		assert.Equal(t, tc.want, settledEvaluation(tc.subject, []byte(tc.body)), tc.name)
	}
}
