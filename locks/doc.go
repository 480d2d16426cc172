// Package locks owns the lock list: principals, user keys and domains that
// may get no new grant and redeem none until unlocked. The approval
// component writes it (after a lock event is authorised); the policy and
// issuer components and every redeemer watch it, so a lock takes effect
// everywhere at once, by push.
package locks
