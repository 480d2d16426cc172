// Package client is the Go API for requesters, approvers and auditors: submit
// a signed request, wait for its decision and open its sealed grant, list and
// answer pending requests, and replay the audit stream. `writ` itself uses
// it for every command that talks to a running pipeline.
package client
