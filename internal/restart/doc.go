// Package restart is Writ's one rule for a long-lived loop that stops
// while it is still wanted — a durable consumer deleted under a component,
// a KV watcher whose server restarted, a start-up step the cluster is not
// ready for: start it again after a pause that doubles while it keeps
// failing, up to a bound, and starts small again once it has run well for
// a while. A failure that persists is then logged a few times a minute,
// never in a busy loop, and the end of the caller's context stops the
// loop at once, pause or not.
//
// Loop keeps a loop running until ctx ends; Until runs a step until it
// succeeds once. Backoff.Pause gives the same pauses to a caller that
// retries only some failures and so keeps its own loop (consumers'
// EnsureStreams, a consumer's pulls, a redelivery's delay).
package restart
