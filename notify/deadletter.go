package notify

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/store"
)

// The dead-letter stream: a record (DeadLetter) per notification the
// notifier gave up on, under writ-deadletter.<domain>.<request-id>.

const deadLetterPrefix = "writ-deadletter"

// DeadLetterStreamConfig is the dead-letter stream's configuration.
func DeadLetterStreamConfig(name, domain string, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        name,
		Description: "Writ notifier: notifications given up on, with their payloads",
		Subjects:    []string{deadLetterPrefix + "." + domain + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    max(replicas, 1),
		Duplicates:  time.Hour,
		MaxAge:      30 * 24 * time.Hour,
		// `writ deadletter` reads it with direct gets (store.Scan): its
		// users may not create consumers. A stream made without it is
		// updated when the notifier starts (CreateOrUpdateStream).
		AllowDirect: true,
	}
}

// DeadLetterSubject is where the dead letters of a request go.
func DeadLetterSubject(domain, id string) string { return deadLetterPrefix + "." + domain + "." + id }

// DeadLetterSubjects matches a domain's subjects in the dead-letter stream.
func DeadLetterSubjects(domain string) string { return deadLetterPrefix + "." + domain + ".>" }

// DeadLetter records a notification given up on.
type DeadLetter struct {
	Version    string          `json:"version"`
	Delivery   string          `json:"delivery"` // HeaderDelivery
	Domain     string          `json:"domain"`
	RequestID  string          `json:"request_id"`
	EventKind  string          `json:"event_kind"`
	EventSeq   uint64          `json:"event_seq"`
	Target     string          `json:"target"` // scheme://host/…#id: never the URL, a credential
	Format     string          `json:"format"`
	Attempts   int             `json:"attempts"`
	QueuedAt   time.Time       `json:"queued_at"`
	LastTry    time.Time       `json:"last_try"`
	LastStatus int             `json:"last_status,omitempty"`
	LastError  string          `json:"last_error"`
	Payload    json.RawMessage `json:"payload"` // the body, for a replay
}

// StoredDeadLetter is a dead letter as its stream holds it.
type StoredDeadLetter struct {
	Seq uint64    // in the dead-letter stream
	At  time.Time // when the stream stored it
	DeadLetter
}

// DeadLetters reads the dead letters of domain ("*": every domain the
// stream holds) from stream (default DefaultDeadLetterStream), oldest
// first. It reads with direct gets, so a reader needs no right to create
// consumers. A stream not made yet (no notifier ever ran) holds none; a
// record that does not decode is left out.
func DeadLetters(ctx context.Context, js jetstream.JetStream, stream, domain string) ([]StoredDeadLetter, error) {
	var out []StoredDeadLetter
	err := store.Scan(ctx, js, cmp.Or(stream, DefaultDeadLetterStream), DeadLetterSubject(domain, "*"), time.Time{}, func(m events.Message) error {
		var l DeadLetter
		if json.Unmarshal(m.Body, &l) == nil {
			out = append(out, StoredDeadLetter{Seq: m.Seq, At: m.Time, DeadLetter: l})
		}
		return nil
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	return out, err
}
