// Package ops is what operators watch a running pipeline by: Prometheus
// metrics in a registry of its own, and the health (/healthz) and
// readiness (/readyz) that orchestrators probe. An Ops is the pipeline's
// consumers.Observer: the consumer loops tell it of every message they
// handle, and it samples the server now and then for what only the server
// knows (consumer lag, the requests waiting for approvers), and asks the
// audit stream for its leader four times a second: readiness turns within
// a second of an election.
package ops
