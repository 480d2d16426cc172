// Package fifo is a bounded, concurrency-safe map that forgets its oldest
// entry first: the caches of checked events and verified identities, which
// hold what was recently read and would otherwise grow with every request.
package fifo
