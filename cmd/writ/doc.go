// Command writ runs and uses Writ: `writ serve` runs the pipeline (on an
// embedded NATS server unless --server names one), `writ init` creates a
// local setup, and the other commands request, approve, verify and audit
// through the client package. It only parses flags and wires parts together.
package main
