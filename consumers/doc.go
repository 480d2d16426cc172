// Package consumers is the JetStream wiring of the pipeline: the audit and
// timer streams, the durable pull consumers of the policy, approval and
// issuer components, reading a request's history in one call, and
// publishing the next event with optimistic concurrency. Each handler
// folds the history, decides, publishes with the expected last sequence of
// the request's subjects and a deterministic message id, and acks only once
// the stream has acknowledged what it produced.
package consumers
