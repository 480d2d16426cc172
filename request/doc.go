// Package request owns the life of one request as a pure fold over its
// history: Apply takes a state and one inspected event and returns the next
// state, or a sentinel error saying why the event changes nothing. Next says
// what the approval flow decides from a state at a given time. No I/O, no
// clock: time is a parameter. The histories that are not a request's (a
// lock, a state change, a policy record, checkpoints…) have folds of their
// own, in package series, which share Link, the chain rule, with Apply.
package request
