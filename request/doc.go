// Package request owns the life of one request as a pure fold over its
// history: Apply takes a state and one inspected event and returns the next
// state, or a sentinel error saying why the event changes nothing. Next says
// what the approval flow decides from a state at a given time. No I/O, no
// clock: time is a parameter.
package request
