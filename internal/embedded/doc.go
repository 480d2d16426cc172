// Package embedded runs a nats-server with JetStream inside the Writ
// process: what `writ serve` uses when no --server is given, and what the
// tests use instead of a mocked bus. It listens on loopback only.
//
// A federated server (Options.Leaf) watches its leafnode links: LeafLinks
// says which are up and what crossed them, and a link coming up or going
// down is logged at info level (a spoke losing its hub, a warning).
package embedded
