package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/writ-dev/writ/events"
)

// Scan streams every message of the stream matching filter, oldest first
// (from since, when it is not zero), to fn, and returns once it has caught
// up with the stream as it was when Scan started. It holds one batch at a
// time, so it suits histories of any size.
func Scan(ctx context.Context, js jetstream.JetStream, stream, filter string, since time.Time, fn func(events.Message) error) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}}
	if !since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	return scan(ctx, js, stream, cfg, fn)
}

func scan(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.OrderedConsumerConfig, fn func(events.Message) error) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("store: stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	if info.State.Msgs == 0 {
		return nil
	}
	last := info.State.LastSeq
	if cfg.OptStartSeq > last {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return err
	}
	for {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			if err := fn(events.Message{
				Subject: m.Subject(), Seq: md.Sequence.Stream, Time: md.Timestamp,
				Header: m.Headers(), Body: m.Data(),
			}); err != nil {
				return err
			}
			if md.Sequence.Stream >= last || md.NumPending == 0 {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return err
		}
		if n == 0 {
			return nil // nothing more matches the filter
		}
	}
}
