package events

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestDuplicateKey(t *testing.T) {
	for body, want := range map[string]string{
		`{"a":1,"b":{"c":[1,{"d":2}]}}`:                    "",
		`{"a":1,"a":2}`:                                    "a",
		`{"data":{"params":{"x":"1"},"params":{"y":"2"}}}`: "params",
		`{"Params":1,"params":2}`:                          "params",
		`{"p\u0061rams":1,"params":2}`:                     "params",
		`[{"a":1},{"a":2}]`:                                "",
		`{"a":{"b":1},"c":{"b":2}}`:                        "",
		`{"s":"a\"b,}]","s2":"x"}`:                         "",
		`{ "k" : [ true , null , -1.5e3 ] , "k" : 0 }`:     "k",
		`"x"`: "", `3`: "", `{}`: "", `[]`: "",
	} {
		assert.True(t, json.Valid([]byte(body)), body)
		k, dup := duplicateKey([]byte(body))
		assert.Equal(t, want != "", dup, body)
		assert.Equal(t, want, k, body)
	}
	many := `{`
	for i := range 40 {
		many += `"k` + string(rune('a'+i%26)) + string(rune('a'+i/26)) + `":1,`
	}
	k, dup := duplicateKey([]byte(many + `"kaa":2}`))
	assert.True(t, dup)
	assert.Equal(t, "kaa", k)
}

// FuzzDuplicateKey holds duplicateKey to a slow reference: encoding/json's
// own tokens, keys compared per object without regard to case.
func FuzzDuplicateKey(f *testing.F) {
	f.Add([]byte(`{"a":1,"b":{"a":[{"c":"\u0041"}]}}`))
	f.Add([]byte(`{"a":1,"A":2}`))
	f.Add([]byte(`[{"x":{"y":1,"Y":[]}}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			return
		}
		_, dup := duplicateKey(body)
		assert.Equal(t, referenceDuplicate(body), dup, "%s", body)
	})
}

func referenceDuplicate(body []byte) bool {
	d := json.NewDecoder(bytes.NewReader(body))
	var walk func() bool
	walk = func() bool {
		tok, err := d.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			dup := false
			for d.More() {
				k, _ := d.Token()
				key := strings.ToLower(k.(string))
				if seen[key] {
					dup = true
				}
				seen[key] = true
				if walk() {
					dup = true
				}
			}
			_, _ = d.Token()
			return dup
		case json.Delim('['):
			dup := false
			for d.More() {
				if walk() {
					dup = true
				}
			}
			_, _ = d.Token()
			return dup
		}
		return false
	}
	return walk()
}
