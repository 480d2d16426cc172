// Package consumers is the pipeline's runtime and the three components the
// design names: policy, approval and issuer (and the auditor, which
// answers junk on decision subjects and keeps checkpoints).
//
// Who reads what (durable pull consumers on the audit stream, subjects
// writ.<domain>.*.<kind>) and what each appends:
//
//	policy    requested                          → evaluated | rejected | refused
//	approval  evaluated (those that wait for     → approved | denied | expired | escalated |
//	          approvers; allow and deny are          counted | refused | reviewed | alerted |
//	          skipped unread), voted, revoke,        revoked | locked | stated
//	          lock, state; fired deadline timers
//	          (WRIT_TIMERS)
//	issuer    evaluated (allow), approved        → granted | refused
//	auditor   the decision kinds, for junk       → refused; checkpoint, witnessed
//
// So an automated decision goes policy → issuer, and one that needs people
// policy → approval → issuer: the approval component acks an evaluation
// that needs no one without reading it (its outcome is peeked at from the
// body: a forged allow it skips is the issuer's to refuse, as the issuer
// checks every evaluation it acts on).
//
// A handler (runner.go: consume, handleAudit) reads the request's history
// and extends it through package history: decide on the folded state,
// append the next event expecting the history's last sequence, read again
// and decide again when another writer came first, and ack only once the
// stream has stored what it produced. Any number of replicas of each
// component therefore make one decision and one grant per request.
//
// Files: env.go (what components share), runner.go and react.go (the
// runtime), runtime.go (the runtime as components of other packages use
// it: the notifier, package notify), stream.go (the streams), policy.go,
// approval.go, issuer.go, auditor.go (the components), guard.go (stops
// issuance while what Writ relies on is weakened), observe.go (metrics
// hooks).
package consumers
