package events_test

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
)

// TestEveryKindIsLinked: every event data type that carries a Prev field
// implements Linked, and its methods read and write that very field; a
// type without the methods would pass every fold's chain check with "".
func TestEveryKindIsLinked(t *testing.T) {
	for _, k := range allKinds {
		t.Run(k.String(), func(t *testing.T) {
			d := events.NewData(k)
			require.NotNil(t, d)
			v := reflect.ValueOf(d).Elem()
			f := v.FieldByName("Prev")
			require.True(t, f.IsValid() && f.Kind() == reflect.String, "%T has a Prev string", d)
			l, ok := d.(events.Linked)
			require.True(t, ok, "%T implements events.Linked", d)

			f.SetString("sha256:field")
			assert.Equal(t, "sha256:field", l.PrevDigest(), "PrevDigest reads the Prev field")
			l.SetPrevDigest("sha256:method")
			assert.Equal(t, "sha256:method", f.String(), "SetPrevDigest writes the Prev field")
			assert.Equal(t, "sha256:method", events.Prev(d))
		})
	}
}

// TestPrevWithoutLink: data that carries no link has none to read or set,
// and a nil pointer reads as the first of a history.
func TestPrevWithoutLink(t *testing.T) {
	assert.Equal(t, "", events.Prev(nil))
	assert.Equal(t, "", events.Prev(struct{ Prev string }{Prev: "sha256:ab"}), "a field named Prev is not a link")
	assert.False(t, events.SetPrev(&struct{ Prev string }{}, "x"))
	assert.Equal(t, "", events.Prev((*events.Requested)(nil)))
}
