package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/writ-dev/writ/events"
)

// Reader reads messages from the audit stream with batched direct gets: a
// request's whole history in one round trip, without creating a consumer.
type Reader struct {
	NC     *nats.Conn
	Stream string
	Batch  int // messages per round trip; default 256
}

// ErrNoStream is returned when the stream does not exist.
var ErrNoStream = errors.New("store: stream not found")

type directGet struct {
	Seq     uint64 `json:"seq"`
	NextFor string `json:"next_by_subj"`
	Batch   int    `json:"batch"`
}

// Load returns every message matching filter from sequence from on, in order.
func (r Reader) Load(ctx context.Context, filter string, from uint64) ([]events.Message, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	batch := r.Batch
	if batch <= 0 {
		batch = 256
	}
	if from == 0 {
		from = 1
	}
	var out []events.Message
	for {
		msgs, more, err := r.fetch(ctx, filter, from, batch)
		if err != nil {
			return nil, err
		}
		out = append(out, msgs...)
		if !more || len(msgs) == 0 {
			return out, nil
		}
		from = msgs[len(msgs)-1].Seq + 1
	}
}

func (r Reader) fetch(ctx context.Context, filter string, from uint64, batch int) ([]events.Message, bool, error) {
	inbox := r.NC.NewRespInbox()
	sub, err := r.NC.SubscribeSync(inbox)
	if err != nil {
		return nil, false, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	req, _ := json.Marshal(directGet{Seq: from, NextFor: filter, Batch: batch})
	if err := r.NC.PublishRequest("$JS.API.DIRECT.GET."+r.Stream, inbox, req); err != nil {
		return nil, false, err
	}
	var out []events.Message
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			if errors.Is(err, nats.ErrNoResponders) {
				return nil, false, fmt.Errorf("%w: %s", ErrNoStream, r.Stream)
			}
			return nil, false, fmt.Errorf("store: read %s: %w", filter, err)
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "204": // end of batch
			pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			return out, pending > 0, nil
		case "404": // nothing matches
			return out, false, nil
		case "503":
			return nil, false, fmt.Errorf("%w: %s", ErrNoStream, r.Stream)
		default:
			return nil, false, fmt.Errorf("store: read %s: status %s %s", filter, status, m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
		if err != nil {
			return nil, false, fmt.Errorf("store: read %s: bad sequence header", filter)
		}
		ts, _ := time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
		out = append(out, events.Message{
			Subject: m.Header.Get("Nats-Subject"),
			Seq:     seq,
			Time:    ts,
			Header:  m.Header,
			Body:    m.Data,
		})
	}
}
