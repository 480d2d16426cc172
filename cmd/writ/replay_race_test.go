//go:build race

package main

// replaySize is how many requests TestAuditReplay generates. Under the
// race detector, checking an event's signatures and identity takes about
// 2.5 ms on two cores: a full replay of 2,000 requests (7,000 events) would
// take 18 s alone.
const replaySize = 500
