// Package access is the table of what each role may do on the NATS server:
// the publish and subscribe permissions carried in a role's user JWT. The
// server enforces them, so a connection can do no more than its role
// needs, whatever Writ's own checks would have said.
//
// Every role but the operator is allowed only what it lists, and is also
// denied by name the JetStream API subjects that rewrite or remove what is
// stored (stream update, delete, purge and message delete, consumer delete
// and pause, ...), so that a wide allow added later still cannot reach them.
// The operator role has every right and is kept apart: no component and no
// command uses it by default.
package access
