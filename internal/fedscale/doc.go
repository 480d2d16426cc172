// Package fedscale holds the test of what a federation costs as domains
// are added: a hub and many spoke domains, embedded in one test binary,
// idle and then each asking across. Everything it asserts is counted by
// the NATS servers themselves (subscriptions made and dropped, messages
// over each leafnode link), never timed; the durations it logs are for
// reading.
//
// WRIT_FEDSCALE_SPOKES (default 19) and WRIT_FEDSCALE_IDLE (a Go duration,
// default 5s) make it larger; deploy/fedscale.sh measures the same with a
// process per domain.
package fedscale
