// Package state owns the resource-state bucket, writ-resource-state: facts
// that resource owners and on-call tooling set about resources and domains
// ("on_call: alice", "incident: INC-7 active"), and that policies read
// when they decide (resource.state and context.domain_state). It decides
// nothing.
//
// A change is an ask in the trail (writ state set|delete, a state event),
// which the approval component decides (Action::"set-state"), records
// (stated) and then applies: the trail is the authority, and the bucket,
// written only by the approval component's keeper (NewKeeper), is how it
// reaches every reader at once. The package encodes resource paths as
// bucket keys, folds the trail's stated events into the entries they
// leave (NewIndex), and keeps a watcher's in-memory copy of the bucket,
// with each entry's revision, which decisions record.
//
// A key is "<domain>.<segment>...", one token per path segment: a segment
// of plain characters ([A-Za-z0-9-], then also "_") stands as is, any other
// is "=" followed by its hex encoding, so distinct paths never share a key.
// The domain's own entry is "<domain>._domain", a key no path encodes to.
// A value is a JSON object of strings.
package state
