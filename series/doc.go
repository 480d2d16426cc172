// Package series folds the histories of the trail that are not requests:
// the records that live under an id of their own. Each has a fold of its
// own, a pure function of its records, as request.Apply is a request's:
//
//   - Lock: a principal's ask to lock or unlock a target, then the approval
//     component's answer (locked, or a refusal);
//   - StateChange: an ask to set or delete a resource's or a domain's
//     state, then its answer (stated, or a refusal);
//   - PolicyRecord: a policy set and flows as the policy component loaded
//     them, recorded once (events.PolicyID);
//   - Checkpoints: a domain's signed heads of its audit stream's tree, each
//     covering the one before (events.CheckpointID);
//   - Witness: another domain's checkpoints as this domain's auditor saw
//     them (events.WitnessID);
//   - Guard: the guard's alerts, weakened and restored (events.GuardID).
//
// Every fold keeps its history's Tip first (request.Link: a record that is
// not trustworthy, or does not chain to the one before, changes nothing)
// and the refusals components recorded in it. Any folds a history of
// whatever kind its first record says (Of): a request's, with request.Apply,
// or a series'; it is what a reader of every history uses (the verifier,
// an export). No I/O, no clock.
package series
