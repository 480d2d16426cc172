// Package policy owns the decision: Cedar policies compiled once at load,
// the approval flows they may require, and Decide, a pure function from a
// request's facts to an outcome (allow, review or deny) with the determining
// policy ids. An evaluation error is a deny, never an allow. It does nothing
// but decide.
package policy
