// Package embedded runs a nats-server with JetStream inside the Writ
// process: what `writ serve` uses when no --server is given, and what the
// tests use instead of a mocked bus. It listens on loopback only.
package embedded
