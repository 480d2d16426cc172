// Package schemas owns the JSON Schemas of Writ's events, one per event type and
// version, embedded in the binary. Validate checks an event body against the
// schema of the type it names; it is called wherever outside input enters.
package schemas
