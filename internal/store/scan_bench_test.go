package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/store"
)

// BenchmarkScan compares Scan's batched direct gets with the ordered
// consumer it used before, over the history of 5,000 requests (four
// events each, as in the audit stream: a subject per request and kind),
// whole and filtered to one kind.
func BenchmarkScan(b *testing.B) {
	js, _ := setup(b)
	ctx := b.Context()
	for i := range benchRequests {
		for _, kind := range []string{"requested", "evaluated", "approved", "granted"} {
			_, err := js.PublishAsync(fmt.Sprintf("writ.acme.r%d.%s", i, kind), []byte("{}"))
			require.NoError(b, err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
	}
	for _, filter := range []string{"writ.>", "writ.*.*.requested"} {
		for _, way := range []struct {
			name string
			scan func(context.Context, jetstream.JetStream, string, string, time.Time, func(events.Message) error) error
		}{{"direct", store.Scan}, {"consumer", scanByConsumer}} {
			b.Run(way.name+"/"+filter, func(b *testing.B) {
				n := 0
				for b.Loop() {
					require.NoError(b, way.scan(b.Context(), js, "WRIT", filter, time.Time{}, func(events.Message) error { n++; return nil }))
				}
				b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

var benchRequests = 5000

// scanByConsumer is how Scan read before: an ordered consumer, fetched
// 256 at a time up to the stream's last sequence.
func scanByConsumer(ctx context.Context, js jetstream.JetStream, stream, filter string, _ time.Time, fn func(events.Message) error) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return err
	}
	last := info.State.LastSeq
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
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
			if err := fn(events.Message{Subject: m.Subject(), Seq: md.Sequence.Stream, Time: md.Timestamp, Header: m.Headers(), Body: m.Data()}); err != nil {
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
			return nil
		}
	}
}
