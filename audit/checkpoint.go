package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/history"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/store"
)

// Checkpointer keeps the Merkle tree of one domain's audit stream and
// appends signed checkpoints of it. Replicas may run side by side: each
// checkpoint is appended only if no other came first (expected last
// sequence on the checkpoint subject), and a replica that lost the race
// continues from the winner's.
type Checkpointer struct {
	NC     *nats.Conn
	Stream string
	Domain string
	Key    nkeys.KeyPair // the domain's auditor key
	Bundle *identity.Bundle
	Clock  func() time.Time

	js     jetstream.JetStream
	tree   *Tree
	last   *events.Record // the last checkpoint, nil before the first
	reader store.Reader
	trail  *history.Log
}

// Made is a checkpoint as appended (or found, when nothing was new).
type Made struct {
	Seq        uint64            `json:"seq"`
	Checkpoint events.Checkpoint `json:"checkpoint"`
	New        bool              `json:"new"`
}

// Subject is where domain's checkpoints are recorded.
func Subject(domain string) string {
	return events.Subject(domain, events.CheckpointID(domain), events.KindCheckpoint)
}

func (c *Checkpointer) init() error {
	if c.js != nil {
		return nil
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	js, err := jetstream.New(c.NC)
	if err != nil {
		return err
	}
	c.js, c.reader = js, store.Reader{NC: c.NC, Stream: c.Stream}
	c.trail = history.New(history.Options{JS: js, Stream: c.Stream, Clock: c.Clock, Checker: events.Checker{Bundle: c.Bundle}})
	return nil
}

// load restores the tree from the last checkpoint in the stream.
func (c *Checkpointer) load(ctx context.Context) error {
	m, err := c.reader.Last(ctx, Subject(c.Domain))
	if err != nil {
		return err
	}
	if m == nil {
		c.tree, c.last = NewTree(), nil
		return nil
	}
	r := events.Checker{Bundle: c.Bundle}.Inspect(*m, time.Time{})
	if r.Err != nil {
		return fmt.Errorf("the last checkpoint (#%d) is not genuine: %w", m.Seq, r.Err)
	}
	t, err := Restore(r.Data.(*events.Checkpoint))
	if err != nil {
		return err
	}
	c.tree, c.last = t, &r
	return nil
}

// ErrTrailCut is returned when messages no checkpoint covered are gone
// from the stream: the tree cannot go on over them, and no checkpoint is
// signed until someone looks. Its text names the sequences gone.
var ErrTrailCut = errors.New("messages no checkpoint covered are gone from the stream")

// ErrEmpty is returned while the stream holds nothing to checkpoint: a
// fresh setup's, before its first event. Nothing is wrong.
var ErrEmpty = errors.New("the stream holds nothing to checkpoint yet")

// Checkpoint brings the tree up to the stream's end and appends a
// checkpoint of it, unless nothing but the last checkpoint was added since.
// It never signs over a stream that lost messages it had not yet covered
// (the start moved past the last checkpoint, or a message after it was
// removed): ErrTrailCut says which.
func (c *Checkpointer) Checkpoint(ctx context.Context) (*Made, error) {
	if err := c.init(); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		if c.tree == nil {
			if err := c.load(ctx); err != nil {
				return nil, err
			}
		}
		err := c.reader.ScanAll(ctx, c.tree.LastSeq()+1, func(m events.Message) error {
			if next := c.tree.LastSeq() + 1; m.Seq != next {
				return fmt.Errorf("%w: #%d to #%d", ErrTrailCut, next, m.Seq-1)
			}
			return c.tree.Append(m)
		})
		if err == nil {
			err = c.checkEnd(ctx)
		}
		if err != nil {
			c.tree = nil
			switch {
			case errors.Is(err, ErrTrailCut) && attempt == 0:
				// Once more from the stream's last checkpoint: a replica
				// that answered the read may have been a moment behind.
				continue
			case errors.Is(err, ErrTrailCut):
				return nil, err
			}
			return nil, fmt.Errorf("read the stream: %w", err)
		}
		if c.last != nil && c.tree.LastSeq() == c.last.Seq {
			return &Made{Seq: c.last.Seq, Checkpoint: *c.last.Data.(*events.Checkpoint)}, nil
		}
		if c.tree.Size() == 0 {
			return nil, ErrEmpty
		}
		made, err := c.append(ctx)
		if store.IsConflict(err) && attempt < 5 {
			c.tree = nil // another replica checkpointed: continue from its
			continue
		}
		if err != nil {
			c.tree = nil
		}
		return made, err
	}
}

// checkEnd, once the tree has read to the stream's end, checks that the
// end is not short of what the tree knows must be there: the last
// checkpoint appended, or, for a tree just begun, any message the stream
// ever held.
func (c *Checkpointer) checkEnd(ctx context.Context) error {
	end := c.tree.LastSeq()
	switch {
	case c.last != nil && end < c.last.Seq:
		return fmt.Errorf("%w: #%d to #%d, the last checkpoint included", ErrTrailCut, end+1, c.last.Seq)
	case c.tree.Size() > 0:
		return nil
	}
	s, err := c.js.Stream(ctx, c.Stream)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	if last := info.State.LastSeq; last > 0 && info.State.Msgs == 0 {
		return fmt.Errorf("%w: #1 to #%d, every message", ErrTrailCut, last)
	}
	return nil
}

func (c *Checkpointer) append(ctx context.Context) (*Made, error) {
	root, err := c.tree.Root()
	if err != nil {
		return nil, err
	}
	cp := &events.Checkpoint{
		Stream: c.Stream, TreeSize: c.tree.Size(), FirstSeq: c.tree.FirstSeq(), LastSeq: c.tree.LastSeq(),
		Root: root, Frontier: c.tree.Frontier(), LastTime: c.tree.lastTime,
	}
	var lastSeq uint64
	if c.last != nil {
		cp.Prev, lastSeq = c.last.Digest, c.last.Seq
	}
	seq, out, err := c.trail.AppendSeries(ctx, c.Domain, events.CheckpointID(c.Domain), lastSeq, c.author(),
		history.Event{Kind: events.KindCheckpoint, Ordinal: fmt.Sprint(cp.TreeSize), Data: cp})
	if err != nil {
		return nil, err
	}
	// The checkpoint becomes the last one; the tree reads it as a leaf on
	// the next round.
	rec := events.Record{Message: events.Message{Subject: out.Subject, Seq: seq, Body: out.Body}, Digest: events.Digest(out.Body), Data: cp}
	c.last = &rec
	return &Made{Seq: seq, Checkpoint: *cp, New: true}, nil
}

// author is who signs checkpoints and witness records: the domain's auditor.
func (c *Checkpointer) author() history.Author {
	return history.Author{Key: c.Key, Source: events.ComponentSource(c.Domain, identity.RoleAuditor)}
}

// Witness records origin's latest checkpoint in this domain's stream, if
// it is new; from reaches origin's stream (across leafnodes, its
// JetStream domain's API prefix). It reports whether it recorded one.
func (c *Checkpointer) Witness(ctx context.Context, origin string, from store.Reader) (bool, error) {
	if err := c.init(); err != nil {
		return false, err
	}
	m, err := from.Last(ctx, Subject(origin))
	if err != nil || m == nil {
		return false, err
	}
	checker := events.Checker{Bundle: c.Bundle}
	r := checker.Inspect(*m, time.Time{})
	if r.Err != nil {
		return false, fmt.Errorf("%s's checkpoint #%d is not genuine: %w", origin, m.Seq, r.Err)
	}
	subject := events.Subject(c.Domain, events.WitnessID(origin), events.KindWitnessed)
	prev, err := c.reader.Last(ctx, subject)
	if err != nil {
		return false, err
	}
	w := &events.Witnessed{Domain: origin, Seq: m.Seq, Subject: m.Subject, Signer: r.Signer,
		Signature: first(m.Header, events.HeaderSignature), Checkpoint: string(m.Body)}
	var lastSeq uint64
	if prev != nil {
		pr := checker.Inspect(*prev, time.Time{})
		if d, ok := pr.Data.(*events.Witnessed); ok && d.Seq >= m.Seq {
			return false, nil
		}
		w.Prev, lastSeq = pr.Digest, prev.Seq
	}
	if _, _, err := c.trail.AppendSeries(ctx, c.Domain, events.WitnessID(origin), lastSeq, c.author(),
		history.Event{Kind: events.KindWitnessed, Ordinal: fmt.Sprint(m.Seq), Data: w}); err != nil {
		if history.IsConflict(err) {
			return false, nil // another replica recorded it
		}
		return false, err
	}
	return true, nil
}
