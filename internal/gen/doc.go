// Package gen appends genuine request histories to a test installation's
// audit stream, far faster than running the pipeline: every event is made,
// signed and chained as its producer would make it (policy.Evaluate for
// decisions, request.Next for the approval flow's, package issuer for
// grants), and checked with the fold every reader uses before it is
// appended. Tests and benchmarks use it for thousands of requests.
package gen
