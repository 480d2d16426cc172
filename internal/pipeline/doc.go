// Package pipeline assembles a domain's components — policy, approval,
// issuer — from a loaded configuration and runs them together; `writ serve`
// and the integration tests both start Writ through it.
package pipeline
