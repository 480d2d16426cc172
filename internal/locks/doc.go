// Package locks owns the lock list: principals, user keys and domains that
// may get no new grant and redeem none until unlocked.
//
// The trail is the authority: a lock is the approval component's locked
// event (lock or unlock), recorded after Cedar allowed the ask. The
// writ-locks bucket is the fast path, written only by the approval
// component (NewKeeper) after it recorded the event, and watched by the
// policy and issuer components and every redeemer, so that a lock takes
// effect everywhere at once, by push. What they check (List) is the
// bucket and the trail's locked events together: an entry deleted from
// the bucket unlocks nobody, and the keeper puts it back.
package locks
