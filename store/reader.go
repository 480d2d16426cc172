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
	// StartTime starts a batch at the first message stored at or after it
	// (instead of at Seq).
	StartTime *time.Time `json:"start_time,omitempty"`
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
	var msgs []events.Message
	err := catchUp(ctx, filter, floor, wait, func() (bool, error) {
		var err error
		msgs, err = r.Load(ctx, filter, 1)
		return floor == 0 || len(msgs) > 0 && msgs[len(msgs)-1].Seq >= floor, err
	})
	if err != nil {
		return nil, err
	}
	return msgs, nil
}

// catchUp calls read until read says its answer reached sequence floor or
// fails, pausing 1 ms, 2 ms, … (at most 100 ms apart) between reads, for
// up to wait (0: until ctx ends), and then returns ErrBehind. Replicas of a
// replicated stream answer reads too, and one may be milliseconds behind.
func catchUp(ctx context.Context, filter string, floor uint64, wait time.Duration, read func() (reached bool, err error)) error {
	var giveUp time.Time
	if wait > 0 {
		giveUp = time.Now().Add(wait)
	}
	for pause := time.Millisecond; ; pause = min(2*pause, 100*time.Millisecond) {
		reached, err := read()
		if err != nil || reached {
			return err
		}
		if !giveUp.IsZero() && time.Now().Add(pause).After(giveUp) {
			return fmt.Errorf("%w: %s ends before sequence %d", ErrBehind, filter, floor)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s ends before sequence %d: %w", ErrBehind, filter, floor, ctx.Err())
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
	batch := r.batch()
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
	return r.scan(ctx, ">", directGet{Seq: max(from, 1)}, fn)
}

// scanCatchUp is how long a scan asks again while the answers end before
// the scan's last message (a replica that is behind), before ErrBehind.
const scanCatchUp = 5 * time.Second

// scan calls fn with every message matching filter from where start says
// (a sequence, or a start time) on, oldest first, one batch in memory at a
// time, up to the last message matching filter when scan began.
func (r Reader) scan(ctx context.Context, filter string, start directGet, fn func(events.Message) error) error {
	// The last message matching now is where the scan ends: the messages
	// added meanwhile are the next scan's. Knowing its sequence also tells
	// a batch that ends early from a replica that is behind.
	end, _, err := r.scanRequest(ctx, filter, directGet{LastFor: filter})
	if err != nil || len(end) == 0 {
		return err
	}
	last := end[0]
	if last.Seq < start.Seq || start.StartTime != nil && last.Time.Before(*start.StartTime) {
		return nil // nothing matches from the start on
	}
	get := start
	get.NextFor, get.Batch = filter, r.batch()
	for {
		var msgs []events.Message
		err := catchUp(ctx, filter, last.Seq, scanCatchUp, func() (bool, error) {
			var pending uint64
			var err error
			msgs, pending, err = r.scanRequest(ctx, filter, get)
			// More pending is an answer to go on with, even from a
			// replica that is behind.
			return len(msgs) > 0 && (pending > 0 || msgs[len(msgs)-1].Seq >= last.Seq), err
		})
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Seq > last.Seq {
				return nil
			}
			if err := fn(m); err != nil {
				return err
			}
			if m.Seq == last.Seq {
				return nil
			}
		}
		get = directGet{Seq: msgs[len(msgs)-1].Seq + 1, NextFor: filter, Batch: get.Batch}
	}
}

// scanRequest is request, bounded: a scan's ctx may have no deadline, and
// a stream that stops answering must not hold it for ever.
func (r Reader) scanRequest(ctx context.Context, filter string, get directGet) ([]events.Message, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return r.request(ctx, filter, get)
}

func (r Reader) batch() int {
	if r.Batch <= 0 {
		return 256
	}
	return r.Batch
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
