// Package ops is what operators watch a running pipeline by: Prometheus
// metrics in a registry of its own, and the health (/healthz) and
// readiness (/readyz) that orchestrators probe. An Ops is the pipeline's
// consumers.Observer: the consumer loops tell it of every message they
// handle, and it samples the server now and then for what only the server
// knows (consumer lag, the requests waiting for approvers), and asks the
// audit stream for its leader four times a second: readiness turns within
// a second of an election. A federated domain's leafnode links are read
// from the embedded server on every probe and scrape: a spoke not linked
// to its hub is ready with a "federation: not linked" warning (it serves
// its own domain), and not ready for /readyz?require=federation.
package ops
