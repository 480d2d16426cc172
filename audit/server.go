package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/store"
)

// ServerConfig configures a domain's auditor server.
type ServerConfig struct {
	NC     *nats.Conn
	Stream string
	Domain string
	Key    nkeys.KeyPair // the domain's auditor key
	Bundle *identity.Bundle
	Clock  func() time.Time // default time.Now
	Logger *slog.Logger     // default: discard
	// Interval is the time between checkpoints; 0: on demand only.
	Interval time.Duration
	// Witness names the domains whose checkpoints this domain records.
	Witness []string
	// Federated says other domains' streams are reached in their own
	// JetStream domains, across leafnodes.
	Federated bool
}

// Server is the auditor's side of the protocol AskCheckpoint and
// AskAttestation speak: it makes signed checkpoints of the audit stream,
// at an interval and when asked (CheckpointSubject), records the
// checkpoints of the domains it witnesses, and attests evidence bundles
// that hold exactly what the stream does (AttestSubject).
type Server struct {
	cfg ServerConfig
	log *slog.Logger
	mu  sync.Mutex // one checkpoint at a time
	cp  *Checkpointer
}

// NewServer returns a domain's auditor server.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.NC == nil || cfg.Key == nil || cfg.Bundle == nil || cfg.Domain == "" || cfg.Stream == "" {
		return nil, errors.New("the auditor needs a connection, a stream, a domain, its key and the trust bundle")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		cfg: cfg,
		log: cfg.Logger.With("component", string(identity.RoleAuditor), "domain", cfg.Domain),
		cp: &Checkpointer{
			NC: cfg.NC, Stream: cfg.Stream, Domain: cfg.Domain, Key: cfg.Key, Bundle: cfg.Bundle, Clock: cfg.Clock,
		},
	}, nil
}

// Checkpoint makes a checkpoint now.
func (s *Server) Checkpoint(ctx context.Context) (*Made, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cp.Checkpoint(ctx)
}

// Run answers asks for checkpoints and attestations, and makes
// checkpoints at the interval, until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	sub, err := s.cfg.NC.Subscribe(CheckpointSubject(s.cfg.Domain), func(m *nats.Msg) { s.answerCheckpoint(ctx, m) })
	if err != nil {
		return fmt.Errorf("serve checkpoints: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	att, err := s.cfg.NC.Subscribe(AttestSubject(s.cfg.Domain), func(m *nats.Msg) { s.attest(ctx, m) })
	if err != nil {
		return fmt.Errorf("serve attestations: %w", err)
	}
	defer func() { _ = att.Unsubscribe() }()
	if s.cfg.Interval <= 0 {
		<-ctx.Done()
		return nil
	}
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	for {
		s.round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// respond answers an ask with v as JSON.
func respond(m *nats.Msg, v any) {
	b, _ := json.Marshal(v)
	_ = m.Respond(b)
}

func (s *Server) answerCheckpoint(ctx context.Context, m *nats.Msg) {
	made, err := s.Checkpoint(ctx)
	if err != nil {
		level := slog.LevelWarn
		switch {
		case errors.Is(err, ErrTrailCut):
			level = slog.LevelError
		case errors.Is(err, ErrEmpty):
			level = slog.LevelDebug // the asker hears it; nothing is wrong
		}
		s.log.Log(ctx, level, "checkpoint asked for failed", "err", err)
		respond(m, map[string]string{"error": err.Error()})
		return
	}
	respond(m, made)
}

// round makes a checkpoint if the stream grew, and records the witnessed
// domains' latest ones. Failures wait for the next round: checkpoints are
// evidence about the trail, never in the way of requests.
func (s *Server) round(ctx context.Context) {
	made, err := s.Checkpoint(ctx)
	switch {
	case errors.Is(err, ErrEmpty):
		s.log.Debug("nothing to checkpoint yet")
	case errors.Is(err, ErrTrailCut):
		// The auditor may emit no alerted event (the approval component
		// owns that kind), and the trail is what lost messages: the log
		// says it, every round, until someone looks.
		s.log.Error("the audit stream lost messages no checkpoint covered; no checkpoint is signed over it until it is looked into", "err", err)
	case err != nil && ctx.Err() == nil:
		s.log.Warn("checkpoint failed; trying again next round", "err", err)
	case err == nil && made.New:
		s.log.Info("checkpoint", "stream_seq", made.Seq, "tree_size", made.Checkpoint.TreeSize, "root", made.Checkpoint.Root)
	}
	for _, d := range s.cfg.Witness {
		from := store.Reader{NC: s.cfg.NC, Stream: s.cfg.Stream}
		if s.cfg.Federated {
			from.APIPrefix = store.DomainAPI(d)
		}
		s.mu.Lock()
		recorded, err := s.cp.Witness(ctx, d, from)
		s.mu.Unlock()
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("could not witness a domain's checkpoint; trying again next round", "witnessed", d, "err", err)
		case recorded:
			s.log.Info("witnessed a checkpoint", "witnessed", d)
		}
	}
}

// attest signs an evidence bundle's manifest once it has checked that the
// bundle holds exactly what the stream does.
func (s *Server) attest(ctx context.Context, m *nats.Msg) {
	var e Evidence
	if err := json.Unmarshal(m.Data, &e); err != nil {
		respond(m, map[string]string{"error": "not an evidence bundle: " + err.Error()})
		return
	}
	if e.Domain != s.cfg.Domain {
		respond(m, map[string]string{"error": "this auditor attests " + s.cfg.Domain + "'s requests only"})
		return
	}
	r := store.Reader{NC: s.cfg.NC, Stream: s.cfg.Stream}
	if err := Confirm(ctx, r, s.cfg.Bundle, &e); err != nil {
		respond(m, map[string]string{"error": err.Error()})
		return
	}
	if err := Attest(&e, s.cfg.Key); err != nil {
		respond(m, map[string]string{"error": err.Error()})
		return
	}
	s.log.Info("attested an evidence bundle", "request_id", e.RequestID)
	respond(m, e.Attestation)
}
