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
	"github.com/nats-io/nats.go/jetstream"

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
var ErrNoStream = errors.New("stream not found")

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
	msgs, _, err := r.request(ctx, subject, directGet{LastFor: subject})
	if err != nil || len(msgs) == 0 {
		return nil, err
	}
	return &msgs[0], nil
}

// At returns the message stored at seq if it is on subject (no
// wildcards), or nil when it is not there.
func (r Reader) At(ctx context.Context, subject string, seq uint64) (*events.Message, error) {
	msgs, _, err := r.request(ctx, subject, directGet{Seq: seq, NextFor: subject})
	if err != nil || len(msgs) == 0 || msgs[0].Seq != seq {
		return nil, err
	}
	return &msgs[0], nil
}

// ErrBehind is returned (within ErrGaveUp) by LoadReaching when every read
// in the time given ended before the sequence asked for.
var ErrBehind = errors.New("the stream's answers stay behind")

// LoadReaching reads every message matching filter, as Load from sequence
// 1, until the last one read is at sequence floor or later. Replicas of a
// replicated stream answer reads too, and one may be milliseconds behind:
// a read that ends short is made again (Retry), for up to wait (0: until
// ctx ends, or Patience), and then ErrBehind. The reads themselves wait
// through what Retry waits through, bounded by ctx alone. With floor 0 any
// answer will do, none included.
func (r Reader) LoadReaching(ctx context.Context, filter string, floor uint64, wait time.Duration) ([]events.Message, error) {
	var giveUp time.Time
	if wait > 0 {
		giveUp = time.Now().Add(wait)
	}
	var msgs []events.Message
	err := Retry(ctx, func(ctx context.Context) error {
		var err error
		if msgs, err = r.Load(ctx, filter, 1); err != nil {
			return err
		}
		if floor == 0 || len(msgs) > 0 && msgs[len(msgs)-1].Seq >= floor {
			return nil
		}
		behind := fmt.Errorf("%w: %s ends before sequence %d", ErrBehind, filter, floor)
		if !giveUp.IsZero() && !time.Now().Before(giveUp) {
			return fmt.Errorf("%w: waited %s for a replica to catch up: %w", ErrGaveUp, wait, behind)
		}
		return behind
	})
	if err != nil {
		return nil, err
	}
	return msgs, nil
}

// Load returns every message matching filter from sequence from on, in order.
func (r Reader) Load(ctx context.Context, filter string, from uint64) ([]events.Message, error) {
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

// scan calls fn with every message matching filter from where start says
// (a sequence, or a start time) on, oldest first, one batch in memory at a
// time, up to the last message matching filter when scan began. Each
// batch is read under Retry, on its own bound (Patience when ctx has
// none): a scan of any length waits through a leader election.
func (r Reader) scan(ctx context.Context, filter string, start directGet, fn func(events.Message) error) error {
	// The last message matching now is where the scan ends: the messages
	// added meanwhile are the next scan's. Knowing its sequence also tells
	// a batch that ends early from a replica that is behind.
	end, _, err := r.request(ctx, filter, directGet{LastFor: filter})
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
		err := Retry(ctx, func(ctx context.Context) error {
			var pending uint64
			var err error
			if msgs, pending, err = r.request(ctx, filter, get); err != nil {
				return err
			}
			// More pending is an answer to go on with, even from a
			// replica that is behind.
			if len(msgs) == 0 || pending == 0 && msgs[len(msgs)-1].Seq < last.Seq {
				return fmt.Errorf("%w: %s ends before sequence %d", ErrBehind, filter, last.Seq)
			}
			return nil
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

// request sends a direct get, under Retry, and returns the messages and,
// for a batch, how many more match after them. An answer that stops
// coming for Patience is asked for again, from the start.
func (r Reader) request(ctx context.Context, filter string, get directGet) ([]events.Message, uint64, error) {
	patience := r.Patience
	if patience <= 0 {
		patience = 2 * time.Second
	}
	var (
		msgs    []events.Message
		pending uint64
		absent  noAnswer
	)
	err := Retry(ctx, func(ctx context.Context) error {
		var err error
		msgs, pending, err = r.attempt(ctx, filter, get, patience)
		if errors.Is(err, errNoResponder) {
			return absent.judge(ctx, r.Stream, r.whyNoAnswer, err)
		}
		return err
	})
	return msgs, pending, err
}

// errImpatient: no answer came within the reader's patience.
var errImpatient = errors.New("no answer in time")

// errNoResponder: nobody answered a direct get (status 503). The stream
// may not exist, or not allow direct gets; or it is there and its
// responders are not (yet): a server (re)joining its cluster, a stream
// whose replicas are all restarting.
var errNoResponder = errors.New("no server answers for the stream")

// noAnswerGrace is how long nobody answering a stream's direct gets is
// taken for a passing state when the JetStream API cannot say whether the
// stream exists (it is silent too: no JetStream at all answers there).
const noAnswerGrace = 5 * time.Second

// noAnswer judges, across one read's (or append's) attempts, requests to
// a stream nobody answers.
type noAnswer struct {
	since time.Time // the first unanswered attempt
	asked time.Time // when the JetStream API was last asked about the stream
}

// judge returns the error to retry on, or, when the stream is known not
// to exist or not to allow direct gets, the error that says so.
func (a *noAnswer) judge(ctx context.Context, stream string, ask func(context.Context) error, err error) error {
	now := time.Now()
	if a.since.IsZero() {
		a.since = now
		return err // ask again at once before asking why
	}
	if now.Sub(a.asked) < time.Second {
		return err
	}
	a.asked = now
	why := ask(ctx)
	var apiErr *jetstream.APIError
	switch {
	case why == nil:
		return err // it exists: its responders are not up yet
	case errors.Is(why, ErrNoStream), errors.Is(why, ErrNoDirect):
		return why
	case errors.As(why, &apiErr) && Transient(why):
		return err // the cluster knows it, and says it is unavailable for now
	case Transient(why) && now.Sub(a.since) < noAnswerGrace:
		return err
	case Transient(why):
		return fmt.Errorf("%w: %s (and the JetStream API does not answer either: %v)", ErrNoStream, stream, why)
	}
	return fmt.Errorf("%w: %s: %w", ErrNoStream, stream, why)
}

// Info returns the stream's info from its JetStream (through APIPrefix,
// so also across leafnodes), under Retry: during a leader election the
// stream's replicas answer for it, with no leader named. A stream that
// does not exist is ErrNoStream.
func (r Reader) Info(ctx context.Context) (*jetstream.StreamInfo, error) {
	var info *jetstream.StreamInfo
	err := Retry(ctx, func(ctx context.Context) error {
		var err error
		info, err = r.info(ctx)
		return err
	})
	return info, err
}

// info asks for the stream's info once, within a second: the API answers
// in milliseconds, and a request lost with a leader going down is asked
// again sooner.
func (r Reader) info(ctx context.Context) (*jetstream.StreamInfo, error) {
	prefix := r.APIPrefix
	if prefix == "" {
		prefix = "$JS.API"
	}
	js, err := jetstream.NewWithAPIPrefix(r.NC, prefix)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	s, err := js.Stream(ctx, r.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: %s (%w)", ErrNoStream, r.Stream, err)
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", r.Stream, err)
	}
	return s.CachedInfo(), nil
}

// whyNoAnswer asks the JetStream API once about a stream whose direct
// gets nobody answers: nil when it exists and allows them (it has no
// responders for now), ErrNoStream or ErrNoDirect when that is why, or the
// API's own failure.
func (r Reader) whyNoAnswer(ctx context.Context) error {
	info, err := r.info(ctx)
	switch {
	case err != nil:
		return err
	case !info.Config.AllowDirect:
		return fmt.Errorf("%w: stream %s (made by an older Writ? `writ serve` updates its notifier's streams when it starts; `nats stream edit %s --allow-direct` updates any)", ErrNoDirect, r.Stream, r.Stream)
	}
	return nil
}

func (r Reader) attempt(ctx context.Context, filter string, get directGet, patience time.Duration) ([]events.Message, uint64, error) {
	rs, err := repliesOf(r.NC)
	if err != nil {
		return nil, 0, err
	}
	// A channel that holds a whole answer: at most Batch messages and the
	// end-of-batch marker.
	inbox, ch, done := rs.open(max(get.Batch, 1) + 1)
	defer done()
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
			return nil, 0, fmt.Errorf("read %s: %w", filter, ctx.Err())
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
				return nil, 0, fmt.Errorf("%w: %s", errNoResponder, r.Stream)
			default:
				return nil, 0, fmt.Errorf("read %s: status %q %s", filter, status, last(m.Header, "Description"))
			}
		}
		seq, err := strconv.ParseUint(last(m.Header, "Nats-Sequence"), 10, 64)
		if err != nil {
			return nil, 0, fmt.Errorf("read %s: bad sequence header", filter)
		}
		ts, err := time.Parse(time.RFC3339Nano, last(m.Header, "Nats-Time-Stamp"))
		if err != nil {
			return nil, 0, fmt.Errorf("read %s: bad time stamp header", filter)
		}
		subject := last(m.Header, "Nats-Subject")
		if !Matches(filter, subject) {
			return nil, 0, fmt.Errorf("read %s: the server returned %q", filter, subject)
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
