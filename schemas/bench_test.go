package schemas_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/schemas"
)

// Validate alone, on the base documents of the tests: the schema check
// events.Checker.Inspect makes of every stored message.
func BenchmarkValidate(b *testing.B) {
	for _, c := range []struct {
		name string
		d    doc
	}{{"requested", requested()}, {"evaluated", evaluated()}} {
		body, err := json.Marshal(c.d)
		require.NoError(b, err)
		typ := c.d["type"].(string)
		require.NoError(b, schemas.Validate(typ, body)) // compiles the schemas, once
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := schemas.Validate(typ, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
