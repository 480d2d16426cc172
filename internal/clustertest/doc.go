// Package clustertest holds Writ's cluster tests: three embedded
// nats-servers on loopback with the audit stream replicated (R3), Writ
// replicas sharing the durable consumers, and what makes each effect
// single under at-least-once delivery — through failover, loss of quorum,
// duplicate publishes, redelivery and racing replicas. It has no code of
// its own, only tests. WRIT_LONG=1 runs the long versions.
package clustertest
