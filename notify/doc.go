// Package notify is the notifier: a component that tells approvers a stage
// waits for them and requesters what became of their requests, through
// webhooks (a Slack-compatible payload, or a versioned JSON Notification
// signed with a shared secret). It reads the audit stream and its own
// delivery queue (WRIT_NOTIFY) on the consumer runtime of package
// consumers, and records what it gives up on in its dead-letter stream
// (WRIT_DEADLETTER), which DeadLetters reads back.
//
// Receivers in Go verify a delivery with VerifyWebhook and decode it as a
// Notification. Nothing the pipeline needs waits on the notifier.
package notify
