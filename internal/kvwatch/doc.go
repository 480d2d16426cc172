// Package kvwatch keeps a JetStream KV bucket in memory, pushed by a watch:
// the lock list and the resource state are read on every decision, and
// must be neither polled nor read before they are loaded.
package kvwatch
