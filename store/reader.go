package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	// APIPrefix reaches the stream's JetStream: "$JS.API" (the default)
	// for the connection's own, "$JS.<domain>.API" for another JetStream
	// domain across leafnodes (see DomainAPI).
	APIPrefix string
	// Patience is how long a read waits for the stream's next answer
	// before it asks again (default 2s). A read is safe to repeat, and
	// its answer can be lost: the replica that took the request may be
	// going down.
	Patience time.Duration
}

// DomainAPI is the API prefix of JetStream domain d.
func DomainAPI(d string) string { return "$JS." + d + ".API" }

// ErrNoStream is returned when the stream does not exist.
var ErrNoStream = errors.New("store: stream not found")

type directGet struct {
	Seq     uint64 `json:"seq,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
	Batch   int    `json:"batch,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
}

// Last returns the last message on subject (no wildcards), or nil when
// there is none.
func (r Reader) Last(ctx context.Context, subject string) (*events.Message, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	msgs, _, err := r.request(ctx, subject, directGet{LastFor: subject})
	if err != nil || len(msgs) == 0 {
		return nil, err
	}
	return &msgs[0], nil
}

// ErrBehind is returned by LoadReaching when every read in the time given
// ended before the sequence asked for.
var ErrBehind = errors.New("store: the stream's answers stay behind")

// LoadReaching reads every message matching filter, as Load from sequence
// 1, until the last one read is at sequence floor or later. Replicas of a
// replicated stream answer reads too, and one may be milliseconds behind:
// a read that ends short is made again at 1 ms, 2 ms, … (at most 100 ms
// apart), for up to wait (0: until ctx ends), and then ErrBehind. With
// floor 0 any answer will do, none included.
func (r Reader) LoadReaching(ctx context.Context, filter string, floor uint64, wait time.Duration) ([]events.Message, error) {
	var giveUp time.Time
	if wait > 0 {
		giveUp = time.Now().Add(wait)
	}
	for pause := time.Millisecond; ; pause = min(2*pause, 100*time.Millisecond) {
		msgs, err := r.Load(ctx, filter, 1)
		if err != nil || floor == 0 || len(msgs) > 0 && msgs[len(msgs)-1].Seq >= floor {
			return msgs, err
		}
		if !giveUp.IsZero() && time.Now().Add(pause).After(giveUp) {
			return nil, fmt.Errorf("%w: %s ends before sequence %d", ErrBehind, filter, floor)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %s ends before sequence %d: %w", ErrBehind, filter, floor, ctx.Err())
		case <-time.After(pause):
		}
	}
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

// ScanAll calls fn with every message of the stream from sequence from
// on, one batch in memory at a time, up to the last message the stream
// held when ScanAll began. It needs no consumer, so it also reads another
// domain's stream across leafnodes, where only direct gets are allowed.
func (r Reader) ScanAll(ctx context.Context, from uint64, fn func(events.Message) error) error {
	batch := r.Batch
	if batch <= 0 {
		batch = 256
	}
	if from == 0 {
		from = 1
	}
	// The first batch says how many messages follow it; each sequence
	// skipped over later (a deleted message) moves that end one further.
	var end, firstLast, prev uint64
	for {
		bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		msgs, pending, err := r.fetchPending(bctx, ">", from, batch)
		cancel()
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			return nil
		}
		if end == 0 {
			firstLast = msgs[len(msgs)-1].Seq
			end = firstLast + pending
		}
		for _, m := range msgs {
			if m.Seq > firstLast && m.Seq > prev+1 {
				end += m.Seq - prev - 1
			}
			prev = m.Seq
			if m.Seq > end {
				return nil
			}
			if err := fn(m); err != nil {
				return err
			}
		}
		if pending == 0 || prev >= end {
			return nil
		}
		from = prev + 1
	}
}

// fetchPending is fetch, returning how many more messages match after
// the batch (a bound: the count is of subjects matching, at any sequence
// past the batch).
func (r Reader) fetchPending(ctx context.Context, filter string, from uint64, batch int) ([]events.Message, uint64, error) {
	return r.request(ctx, filter, directGet{Seq: from, NextFor: filter, Batch: batch})
}

func (r Reader) fetch(ctx context.Context, filter string, from uint64, batch int) ([]events.Message, bool, error) {
	msgs, pending, err := r.request(ctx, filter, directGet{Seq: from, NextFor: filter, Batch: batch})
	return msgs, pending > 0, err
}

// request sends a direct get and returns the messages and, for a batch,
// how many more match after them. An answer that stops coming for
// Patience is asked for again, from the start, until ctx ends.
func (r Reader) request(ctx context.Context, filter string, get directGet) ([]events.Message, uint64, error) {
	patience := r.Patience
	if patience <= 0 {
		patience = 2 * time.Second
	}
	absent := 0
	for {
		msgs, pending, err := r.attempt(ctx, filter, get, patience)
		switch {
		case ctx.Err() != nil:
			return msgs, pending, err
		case errors.Is(err, errImpatient):
		case errors.Is(err, ErrNoStream) && absent < len(noStreamRetries):
			// Nobody answers for the stream: it may not exist, or a
			// server just (re)joining its cluster may not yet know who
			// serves it. Ask again a few times before believing it.
			select {
			case <-ctx.Done():
				return nil, 0, err
			case <-time.After(noStreamRetries[absent]):
			}
			absent++
		default:
			return msgs, pending, err
		}
	}
}

// noStreamRetries are the pauses before asking again when nobody answers
// for the stream: about 1.5 s in all.
var noStreamRetries = []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}

// errImpatient: no answer came within the reader's patience.
var errImpatient = errors.New("store: no answer in time")

func (r Reader) attempt(ctx context.Context, filter string, get directGet, patience time.Duration) ([]events.Message, uint64, error) {
	inbox := r.NC.NewRespInbox()
	// A channel that holds a whole answer: at most Batch messages and the
	// end-of-batch marker. (A sync subscription would allocate the
	// connection's default 64k-message channel for each read.)
	ch := make(chan *nats.Msg, max(get.Batch, 1)+1)
	sub, err := r.NC.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	req, _ := json.Marshal(get)
	prefix := r.APIPrefix
	if prefix == "" {
		prefix = "$JS.API"
	}
	if err := r.NC.PublishRequest(prefix+".DIRECT.GET."+r.Stream, inbox, req); err != nil {
		return nil, 0, err
	}
	var out []events.Message
	quiet := time.NewTimer(patience)
	defer quiet.Stop()
	for {
		var m *nats.Msg
		select {
		case m = <-ch:
			quiet.Reset(patience)
		case <-quiet.C:
			return nil, 0, errImpatient
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("store: read %s: %w", filter, ctx.Err())
		}
		// A stored message comes back with the server's headers appended to
		// the ones its publisher wrote, which may include forged copies of
		// them (or a forged Status): only the last value of each is the
		// server's, and only a message with a sequence is a stored one.
		if len(m.Header.Values("Nats-Sequence")) == 0 {
			switch status := last(m.Header, "Status"); status {
			case "204": // end of batch
				pending, _ := strconv.ParseUint(last(m.Header, "Nats-Num-Pending"), 10, 64)
				return out, pending, nil
			case "404": // nothing matches
				return out, 0, nil
			case "503":
				return nil, 0, fmt.Errorf("%w: %s", ErrNoStream, r.Stream)
			default:
				return nil, 0, fmt.Errorf("store: read %s: status %q %s", filter, status, last(m.Header, "Description"))
			}
		}
		seq, err := strconv.ParseUint(last(m.Header, "Nats-Sequence"), 10, 64)
		if err != nil {
			return nil, 0, fmt.Errorf("store: read %s: bad sequence header", filter)
		}
		ts, err := time.Parse(time.RFC3339Nano, last(m.Header, "Nats-Time-Stamp"))
		if err != nil {
			return nil, 0, fmt.Errorf("store: read %s: bad time stamp header", filter)
		}
		subject := last(m.Header, "Nats-Subject")
		if !Matches(filter, subject) {
			return nil, 0, fmt.Errorf("store: read %s: the server returned %q", filter, subject)
		}
		hdr := nats.Header{}
		for k, v := range m.Header {
			if !serverHeaders[k] {
				hdr[k] = v
			}
		}
		out = append(out, events.Message{Subject: subject, Seq: seq, Time: ts, Header: hdr, Body: m.Data})
		if get.Batch == 0 {
			return out, 0, nil // a single get has no end-of-batch marker
		}
	}
}

// serverHeaders are set by the server on a direct get; a publisher's copies
// of them are dropped.
var serverHeaders = map[string]bool{
	"Nats-Stream": true, "Nats-Subject": true, "Nats-Sequence": true, "Nats-Time-Stamp": true,
	"Nats-Num-Pending": true, "Nats-Last-Sequence": true, "Nats-UpTo-Sequence": true,
	"Status": true, "Description": true,
}

func last(h nats.Header, key string) string {
	if v := h.Values(key); len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// Matches reports whether subject matches a NATS subject filter (with *
// and > wildcards).
func Matches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		switch {
		case tok == ">":
			return len(s) > i
		case i >= len(s):
			return false
		case tok != "*" && tok != s[i]:
			return false
		case s[i] == "":
			return false
		}
	}
	return len(f) == len(s)
}
