package state_test

import (
	"fmt"

	"github.com/writ-dev/writ/internal/state"
)

func ExampleKey() {
	for _, path := range []string{"prod/db", "prod/db.1", "_domain", ""} {
		key, _ := state.Key("acme", path)
		domain, back, _ := state.ParseKey(key)
		fmt.Printf("%q -> %s -> %s %q\n", path, key, domain, back)
	}
	// Output:
	// "prod/db" -> acme.prod.db -> acme "prod/db"
	// "prod/db.1" -> acme.prod.=64622e31 -> acme "prod/db.1"
	// "_domain" -> acme.=5f646f6d61696e -> acme "_domain"
	// "" -> acme._domain -> acme ""
}
