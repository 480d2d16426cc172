//go:build !race

package main

// replaySize is how many requests TestAuditReplay generates.
const replaySize = 2000
