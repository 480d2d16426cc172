// Package layout holds the tests that keep the module's layout what the
// README says it is: the model packages import no NATS client or server,
// and every package is in the README's package map.
package layout
