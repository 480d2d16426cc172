// Package trailkv keeps a KV bucket as a view of the audit trail. Facts
// that decisions read — locks, resource state — are recorded as events
// (a lock's locked, a state change's stated) and pushed to every reader
// through a bucket. The trail is the authority: an Index folds the
// trail's events of one kind into the latest word per bucket key, so that
// readers can check the bucket against it, and a Keeper, run by the one
// component that owns the bucket, writes that word into the bucket and
// puts back whatever anyone else changed there, saying so in the log.
//
// An event counts when it is valid (schema, signature by the key entitled
// to its kind in its domain) and is the first of its kind in its history:
// a second answer to one ask, or a genuine event copied again, changes
// nothing. Among the events for one key the one stored last wins, so
// events may be read in any order and more than once.
package trailkv
