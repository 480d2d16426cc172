// Package history is the one home of a request's history in the audit
// stream: reading it (every message inspected against the trust bundle,
// then folded once: into a request.State, or, for the id of a series, by
// the series' own fold, series.Any) and extending it (an event sealed by
// its author and appended only if the history still ends where the author
// read it, read again and decided again when another writer came first).
//
// Every writer of the trail goes through it — the policy, approval, issuer
// and auditor components, the requester's and approver's client, the
// redeemer and the checkpointer — and so does the notifier, which only
// reads. The rules that used to be written once per writer live here once:
//
//   - a read reaches what is known to exist: a replica of a replicated
//     stream may answer a moment behind, so a read that ends before the
//     sequence asked for (the message being handled, or, for a client,
//     what it wrote or read of the request before) is made again;
//   - an append names the sequence the history must still end at, and
//     a conflict means "read again, decide again";
//   - an append whose acknowledgement was lost is recognised by its own
//     message id when the history is read again, and is not made twice;
//   - an id is one subject token, never a wildcard (CheckID).
package history
