package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/internal/store"
)

// VerifyStream verifies a live stream, read with reader (which may reach
// another domain's stream across leafnodes), from its first message to the
// last it held when the verification began, one batch at a time. The
// stream's own account of what it held (its first and last sequences,
// its message count and max age) is read first: messages gone from its
// start, its end, or all of them, show.
func VerifyStream(ctx context.Context, reader store.Reader, o Options, progress func(n uint64)) (*Report, error) {
	if o.Stream == "" {
		o.Stream = reader.Stream
	}
	stream := reader.Stream
	x, err := StreamExtent(ctx, reader)
	if err != nil {
		return nil, err
	}
	o.Extent = x
	v := NewVerifier(o)
	err = reader.ScanAll(ctx, 1, func(m events.Message) error {
		v.Add(m)
		if progress != nil {
			progress(v.rep.Messages)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	return v.Finish(), nil
}

// StreamExtent asks the stream's JetStream (through the reader's API
// prefix, so also across leafnodes) for its state and max age.
func StreamExtent(ctx context.Context, reader store.Reader) (*Extent, error) {
	info, err := reader.Info(ctx)
	if errors.Is(err, store.ErrNoStream) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("read %s's state: %w", reader.Stream, err)
	}
	st := info.State
	return &Extent{FirstSeq: st.FirstSeq, LastSeq: st.LastSeq, Msgs: st.Msgs, MaxAge: info.Config.MaxAge}, nil
}

// WitnessHeads returns the checkpoints of domain that witness's stream
// records (read with reader, which reaches the witness's stream), each
// checked to be genuine by checker.
func WitnessHeads(ctx context.Context, reader store.Reader, checker events.Checker, witness, domain string) ([]Head, error) {
	msgs, err := reader.Load(ctx, events.Subject(witness, events.WitnessID(domain), events.KindWitnessed), 1)
	if err != nil {
		return nil, err
	}
	var heads []Head
	for _, m := range msgs {
		r := checker.Inspect(m, m.Time)
		if r.Err != nil {
			return nil, fmt.Errorf("%s's witness record #%d is not genuine: %w", witness, m.Seq, r.Err)
		}
		w := r.Data.(*events.Witnessed)
		inner := witnessedCheckpoint(checker, w, m.Time)
		if inner.Err != nil || inner.Domain != domain {
			return nil, fmt.Errorf("%s's witness record #%d holds no genuine checkpoint of %s: %v", witness, m.Seq, domain, inner.Err)
		}
		heads = append(heads, Head{Seq: w.Seq, Digest: inner.Digest, Checkpoint: *inner.Data.(*events.Checkpoint),
			Source: fmt.Sprintf("witness %s (#%d)", witness, m.Seq)})
	}
	return heads, nil
}
