package events

import (
	"encoding/json"
	"io/fs"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/schemas"
)

// Every row of the kind table is whole, and names what no other row does.
func TestKindTable(t *testing.T) {
	assert.Equal(t, kindDef{}, KindNone.def(), "KindNone has no row")
	assert.Empty(t, Kind(len(kinds)).Type())
	names, types := map[string]Kind{}, map[string]Kind{}
	for _, k := range Kinds() {
		d := k.def()
		require.NotEmpty(t, d.name, "kind %d has no name", k)
		t.Run(d.name, func(t *testing.T) {
			assert.NotContains(t, names, d.name, "a name of its own")
			names[d.name] = k
			for _, typ := range k.Types() {
				assert.NotContains(t, types, typ, "a type of its own")
				types[typ] = k
				assert.True(t, k.Accepts(typ))
			}
			assert.Regexp(t, `^writ\.[a-z]+\.`+d.name+`\.v[0-9]+$`, d.typ, "the type names the kind")
			parsed, err := ParseKind(d.name)
			require.NoError(t, err)
			assert.Equal(t, k, parsed)
			require.NotNil(t, d.data, "a data type")
			assert.NotSame(t, d.data(), d.data(), "a new value each time")

			// Exactly one signer: a principal, a role, or (a refusal)
			// any component.
			signers := 0
			for _, b := range []bool{d.principal, d.role != "", k.fromAnyComponent()} {
				if b {
					signers++
				}
			}
			assert.Equal(t, 1, signers, "one kind of signer")
			// An ask's data names who signs it: Inspect checks that.
			_, isAsk := d.data().(ask)
			assert.Equal(t, d.principal, isAsk, "principal kinds' data, and only theirs, is an ask")
		})
	}
	_, err := ParseKind("")
	assert.Error(t, err)
}

// The schemas are checked against the kind table: one schema per type of
// every kind (and no other), each accepting only its own type, with the
// data fields of the kind's Go type, no more and no fewer. A kind added,
// a field added, a version bumped without its schema: this test fails.
func TestSchemasFollowTheKindTable(t *testing.T) {
	var want []string
	for _, k := range Kinds() {
		want = append(want, k.Types()...)
	}
	got := schemas.Types()
	slices.Sort(want)
	slices.Sort(got)
	require.Equal(t, want, got, "one schema per event type")

	for _, k := range Kinds() {
		t.Run(k.String(), func(t *testing.T) {
			raw, err := fs.ReadFile(schemas.FS(), k.Type()+".json")
			require.NoError(t, err)
			var s struct {
				Properties struct {
					Type struct {
						Const string `json:"const"`
					} `json:"type"`
					Data struct {
						Properties           map[string]json.RawMessage `json:"properties"`
						Required             []string                   `json:"required"`
						AdditionalProperties *bool                      `json:"additionalProperties"`
					} `json:"data"`
				} `json:"properties"`
			}
			require.NoError(t, json.Unmarshal(raw, &s))
			assert.Equal(t, k.Type(), s.Properties.Type.Const)
			data := s.Properties.Data
			require.NotNil(t, data.AdditionalProperties)
			assert.False(t, *data.AdditionalProperties, "the schema refuses fields it does not name")
			fields := jsonFields(reflect.TypeOf(NewData(k)).Elem())
			assert.ElementsMatch(t, fields, slices.Collect(maps.Keys(data.Properties)), "schema and Go type name the same data fields")
			for _, r := range data.Required {
				assert.Contains(t, fields, r, "a required field the Go type has")
			}
		})
	}
}

// jsonFields are the JSON names of a struct's fields.
func jsonFields(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	return out
}
