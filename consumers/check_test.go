package consumers_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/internal/writtest"
	"github.com/writ-dev/writ/redeem"
)

// TestCheckStreamAtLeastAsStrong: what the guard holds a stream to. Every
// weakening is refused and named; a configuration stronger than asked for
// (longer limits, more replicas, no limit) passes.
func TestCheckStreamAtLeastAsStrong(t *testing.T) {
	audit := consumers.AuditStreamConfig(consumers.StreamConfig{Domain: writtest.Domain, Replicas: 3, MaxAge: 90 * 24 * time.Hour})
	used := consumers.BucketStreamConfig(redeem.BucketConfigs(3)[0])
	require.NoError(t, consumers.CheckStream(audit, audit))
	require.NoError(t, consumers.CheckStream(used, used))

	weaker := []struct {
		name    string
		want    jetstream.StreamConfig
		weaken  func(*jetstream.StreamConfig)
		problem string
	}{
		{"sealed", audit, func(c *jetstream.StreamConfig) { c.Sealed = true }, "it is sealed"},
		{"subjects", audit, func(c *jetstream.StreamConfig) { c.Subjects = []string{"writ.>"} }, "subjects are [writ.>]"},
		{"retention", audit, func(c *jetstream.StreamConfig) { c.Retention = jetstream.WorkQueuePolicy }, "retention is WorkQueue"},
		{"discard", audit, func(c *jetstream.StreamConfig) { c.Discard = jetstream.DiscardOld }, "discard policy is DiscardOld"},
		{"storage", audit, func(c *jetstream.StreamConfig) { c.Storage = jetstream.MemoryStorage }, "storage is Memory"},
		{"max messages", audit, func(c *jetstream.StreamConfig) { c.MaxMsgs = 10 }, "max messages is 10, want unlimited"},
		{"max bytes", audit, func(c *jetstream.StreamConfig) { c.MaxBytes = 10 }, "max bytes is 10, want unlimited"},
		{"max age shorter", audit, func(c *jetstream.StreamConfig) { c.MaxAge = time.Hour }, "max age is 1h0m0s, want 2160h0m0s"},
		{"per subject", audit, func(c *jetstream.StreamConfig) { c.MaxMsgsPerSubject = 1 }, "max messages per subject is 1, want unlimited"},
		{"message size", audit, func(c *jetstream.StreamConfig) { c.MaxMsgSize = 1024 }, "max message size is 1024, want 1048576"},
		{"duplicates", audit, func(c *jetstream.StreamConfig) { c.Duplicates = time.Minute }, "duplicate window is 1m0s, want 24h0m0s or more"},
		{"replicas", audit, func(c *jetstream.StreamConfig) { c.Replicas = 1 }, "replicas are 1, want 3 or more"},
		{"deny delete", audit, func(c *jetstream.StreamConfig) { c.DenyDelete = false }, "deny_delete is off"},
		{"deny purge", audit, func(c *jetstream.StreamConfig) { c.DenyPurge = false }, "deny_purge is off"},
		{"rollups", audit, func(c *jetstream.StreamConfig) { c.AllowRollup = true }, "rollups are allowed"},
		{"message TTL", audit, func(c *jetstream.StreamConfig) { c.AllowMsgTTL = true }, "per-message TTLs are allowed"},
		{"delete markers", audit, func(c *jetstream.StreamConfig) { c.SubjectDeleteMarkerTTL = time.Minute }, "subject delete markers are on"},
		{"schedules", audit, func(c *jetstream.StreamConfig) { c.AllowMsgSchedules = true }, "message schedules are allowed"},
		{"counter", audit, func(c *jetstream.StreamConfig) { c.AllowMsgCounter = true }, "it is a counter stream"},
		{"direct", audit, func(c *jetstream.StreamConfig) { c.AllowDirect = false }, "direct get is off"},
		{"no ack", audit, func(c *jetstream.StreamConfig) { c.NoAck = true }, "publishes are not acknowledged"},
		{"async persist", audit, func(c *jetstream.StreamConfig) { c.PersistMode = jetstream.AsyncPersistMode }, "persisted asynchronously"},
		{"mirror", audit, func(c *jetstream.StreamConfig) { c.Mirror = &jetstream.StreamSource{Name: "OTHER"} }, "it mirrors stream OTHER"},
		{"sources", audit, func(c *jetstream.StreamConfig) { c.Sources = []*jetstream.StreamSource{{Name: "OTHER"}} }, "takes in messages from 1 other streams"},
		{"transform", audit, func(c *jetstream.StreamConfig) {
			c.SubjectTransform = &jetstream.SubjectTransformConfig{Source: ">", Destination: "x.>"}
		}, "stored subjects are transformed"},
		{"bucket TTL", used, func(c *jetstream.StreamConfig) { c.MaxAge = time.Hour }, "max age is 1h0m0s, want 25h10m0s"},
		{"bucket TTL removed is fine, history lowered is not", consumers.BucketStreamConfig(jetstream.KeyValueConfig{Bucket: "b", History: 5}),
			func(c *jetstream.StreamConfig) { c.MaxMsgsPerSubject = 2 }, "max messages per subject is 2, want 5"},
	}
	for _, tc := range weaker {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.want
			tc.weaken(&got)
			err := consumers.CheckStream(got, tc.want)
			require.ErrorIs(t, err, consumers.ErrWeakened)
			assert.Contains(t, err.Error(), tc.problem)
		})
	}

	stronger := []struct {
		name       string
		want       jetstream.StreamConfig
		strengthen func(*jetstream.StreamConfig)
	}{
		{"max age longer", audit, func(c *jetstream.StreamConfig) { c.MaxAge *= 2 }},
		{"max age none", audit, func(c *jetstream.StreamConfig) { c.MaxAge = 0 }},
		{"more replicas", audit, func(c *jetstream.StreamConfig) { c.Replicas = 5 }},
		{"longer duplicate window", audit, func(c *jetstream.StreamConfig) { c.Duplicates = 48 * time.Hour }},
		{"larger messages", audit, func(c *jetstream.StreamConfig) { c.MaxMsgSize = 8 << 20 }},
		{"subjects in another order", consumers.BucketStreamConfig(jetstream.KeyValueConfig{Bucket: "b"}),
			func(c *jetstream.StreamConfig) { c.Subjects = append(c.Subjects, c.Subjects[0]) }},
		{"bucket kept forever", used, func(c *jetstream.StreamConfig) { c.MaxAge = 0 }},
		{"bucket history higher", used, func(c *jetstream.StreamConfig) { c.MaxMsgsPerSubject = 10 }},
		{"bucket denies purges", used, func(c *jetstream.StreamConfig) { c.DenyPurge = true }},
		{"description", audit, func(c *jetstream.StreamConfig) { c.Description = "edited" }},
	}
	for _, tc := range stronger {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.want
			tc.strengthen(&got)
			assert.NoError(t, consumers.CheckStream(got, tc.want))
		})
	}
}

// TestCheckConsumer: what the guard holds a durable consumer to.
func TestCheckConsumer(t *testing.T) {
	want := consumers.Durable{Consumer: "writ-issuer-acme", Filters: []string{"writ.acme.*.evaluated", "writ.acme.*.approved"}}.Config()
	until := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		name    string
		edit    func(*jetstream.ConsumerInfo)
		problem string // "" passes
	}{
		{"as created", func(*jetstream.ConsumerInfo) {}, ""},
		{"filters in another order", func(i *jetstream.ConsumerInfo) {
			i.Config.FilterSubjects = []string{"writ.acme.*.approved", "writ.acme.*.evaluated"}
		}, ""},
		{"unlimited deliveries", func(i *jetstream.ConsumerInfo) { i.Config.MaxDeliver = -1 }, ""},
		{"paused", func(i *jetstream.ConsumerInfo) { i.Paused, i.Config.PauseUntil = true, &until }, "it is paused until 2031-01-02T03:04:05Z"},
		{"a filter dropped", func(i *jetstream.ConsumerInfo) { i.Config.FilterSubjects = i.Config.FilterSubjects[:1] }, "filters are [writ.acme.*.evaluated]"},
		{"one filter for all", func(i *jetstream.ConsumerInfo) {
			i.Config.FilterSubjects, i.Config.FilterSubject = nil, "writ.>"
		}, "filters are [writ.>]"},
		{"ack none", func(i *jetstream.ConsumerInfo) { i.Config.AckPolicy = jetstream.AckNonePolicy }, "ack policy is AckNone"},
		{"fewer deliveries", func(i *jetstream.ConsumerInfo) { i.Config.MaxDeliver = 1 }, "max deliveries is 1, want 1000"},
		{"removed when idle", func(i *jetstream.ConsumerInfo) { i.Config.InactiveThreshold = time.Minute }, "the server removes it after 1m0s idle"},
		{"headers only", func(i *jetstream.ConsumerInfo) { i.Config.HeadersOnly = true }, "it delivers headers only"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			i := &jetstream.ConsumerInfo{Name: want.Durable, Config: want}
			i.Config.FilterSubjects = append([]string(nil), want.FilterSubjects...)
			tc.edit(i)
			err := consumers.CheckConsumer(i, want)
			if tc.problem == "" {
				assert.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, consumers.ErrWeakened)
			assert.Contains(t, err.Error(), tc.problem)
		})
	}
}
