// Package writtest starts real Writ installations for tests: a fresh setup
// from config.Init in t.TempDir(), an embedded nats-server with JetStream on
// a random loopback port, the streams, and the pipeline. No mocked bus.
package writtest
