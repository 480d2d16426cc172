// Package policy owns the decision: Cedar policies compiled once at load,
// the approval flows they may require, and Decide, a pure function from a
// request's facts to an outcome (allow, review or deny) with the determining
// policy ids. An evaluation error is a deny, never an allow. It does nothing
// but decide.
//
// Besides the request's own facts, a decision may rest on resource state
// (the writ-resource-state bucket, see package state), which the caller
// reads and passes in Context: Context.ResourceState becomes the resource's
// attribute state and Context.DomainState the context's domain_state, both
// records of strings, empty when there is none. Context.Record keeps both,
// so that a recorded decision can be evaluated again.
package policy
