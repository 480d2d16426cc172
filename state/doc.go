// Package state owns the resource-state bucket, writ-resource-state: facts
// that resource owners and on-call tooling write about resources and
// domains ("on_call: alice", "incident: INC-7 active"), and that policies
// read when they decide (resource.state and context.domain_state). It
// encodes resource paths as bucket keys, writes and deletes entries, and
// keeps a watcher's in-memory copy of the bucket, pushed by the bucket. It
// decides nothing.
//
// A key is "<domain>.<segment>...", one token per path segment: a segment
// of plain characters ([A-Za-z0-9-], then also "_") stands as is, any other
// is "=" followed by its hex encoding, so distinct paths never share a key.
// The domain's own entry is "<domain>._domain", a key no path encodes to.
// A value is a JSON object of strings.
package state
