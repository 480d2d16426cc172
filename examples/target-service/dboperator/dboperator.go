package dboperator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/writ-dev/writ/issuer"
	"github.com/writ-dev/writ/redeem"
)

// DefaultName is the micro service's default name, also the prefix of its
// endpoint subjects.
const DefaultName = "db-operator"

// Version is the micro service's version.
const Version = "0.1.0"

// The actions the service performs, each on the resources under its scope.
const (
	ActionRestart = "restart" // restart a production database: prod/<name>
	ActionDeploy  = "deploy"  // apply migrations to a staging database: staging/<name>
)

// Scopes maps each action to the resource prefix it operates on.
var Scopes = map[string]string{
	ActionRestart: "prod/",
	ActionDeploy:  "staging/",
}

// Codes of refusals that happen before redemption; every other refusal
// carries the redeem package's code (redeem.Code).
const (
	CodeBadRequest = "bad-request"  // the body is not a Command
	CodeOutOfScope = "out-of-scope" // the resource is not one this action operates on
)

// Log attribute keys.
const (
	attrRequest   = "request_id"
	attrAction    = "action"
	attrResource  = "resource"
	attrCode      = "code"
	attrTokenHash = "token_hash"
)

// Redeemer is what the service needs of a redeem.Redeemer.
type Redeemer interface {
	Redeem(ctx context.Context, token string, proof redeem.Proof, want redeem.Want) (issuer.Claims, error)
}

// Config configures an Operator.
type Config struct {
	NC       *nats.Conn
	Redeemer Redeemer // a running redeem.Redeemer of the service's domain
	Name     string   // micro service name and subject prefix; default DefaultName
	// Timeout bounds the handling of one call, redemption included; default 10s.
	Timeout time.Duration
	Logger  *slog.Logger
}

// ErrInvalidConfig is what an error of Validate (and New) matches: an
// Operator cannot run with the configuration.
var ErrInvalidConfig = errors.New("invalid db operator configuration")

// Validate checks the configuration and changes nothing: a zero value
// means its default, which New fills in (withDefaults).
func (c Config) Validate() error {
	d := c.withDefaults()
	var errs []error
	if c.NC == nil {
		errs = append(errs, errors.New("no NATS connection"))
	}
	if c.Redeemer == nil {
		errs = append(errs, errors.New("no redeemer"))
	}
	if !validName(d.Name) {
		errs = append(errs, fmt.Errorf("service name %q: letters, digits, '-' and '_' only", d.Name))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s is negative", c.Timeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// withDefaults returns the configuration with its defaults filled in.
func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// ServicePrefix is the first token of the subjects of services that act
// on grants: Writ's roles let principals call them and redeemers serve
// them (package access).
const ServicePrefix = "act"

// Subject is the subject of a service's endpoint for action.
func Subject(name, action string) string { return ServicePrefix + "." + name + "." + action }

// Command is the body of a call: the grant, the holder's proof of
// possession (redeem.Proof.Encode), and what to act on.
type Command struct {
	Grant    string            `json:"grant"`
	Proof    string            `json:"proof"`
	Resource string            `json:"resource"`
	Params   map[string]string `json:"params,omitempty"`
}

// Result is the answer to a call that was performed.
type Result struct {
	RequestID string `json:"request_id"` // the Writ request the grant came from
	Action    string `json:"action"`
	Resource  string `json:"resource"`
	Done      string `json:"done"` // what was done, in words
}

// Refusal is the answer to a call that was not performed. Call returns it
// as an error.
type Refusal struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (r *Refusal) Error() string { return "db-operator refused (" + r.Code + "): " + r.Message }

// Performed is one action the operator performed.
type Performed struct {
	Action    string
	Resource  string
	Params    map[string]string
	RequestID string
	Holder    string
	At        time.Time
}

// Operator is the db-operator service.
type Operator struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	svc       micro.Service
	performed []Performed
}

// New returns an Operator. It does no I/O: Start adds the service.
func New(cfg Config) (*Operator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Operator{cfg: cfg, log: cfg.Logger.With("component", "db-operator", "service", cfg.Name)}, nil
}

// Start adds the micro service and its endpoints, one per action, on
// Subject(name, action). Calls are handled under ctx until Stop.
func (o *Operator) Start(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.svc != nil {
		return errors.New("dboperator: already started")
	}
	svc, err := micro.AddService(o.cfg.NC, micro.Config{
		Name:        o.cfg.Name,
		Version:     Version,
		Description: "Database operator: acts only on a redeemed Writ grant",
	})
	if err != nil {
		return fmt.Errorf("dboperator: add service: %w", err)
	}
	g := svc.AddGroup(ServicePrefix + "." + o.cfg.Name)
	for _, action := range []string{ActionRestart, ActionDeploy} {
		h := micro.ContextHandler(ctx, func(ctx context.Context, req micro.Request) { o.handle(ctx, action, req) })
		if err := g.AddEndpoint(action, h, micro.WithEndpointMetadata(map[string]string{"scope": Scopes[action] + "*"})); err != nil {
			_ = svc.Stop()
			return fmt.Errorf("dboperator: add endpoint %s: %w", action, err)
		}
	}
	o.svc = svc
	o.log.Info("listening", "subjects", Subject(o.cfg.Name, "*"))
	return nil
}

// Stop drains the endpoints: calls being handled finish first.
func (o *Operator) Stop() error {
	o.mu.Lock()
	svc := o.svc
	o.mu.Unlock()
	if svc == nil {
		return nil
	}
	return svc.Stop()
}

// Run starts the service, serves until ctx ends, and stops it.
func (o *Operator) Run(ctx context.Context) error {
	if err := o.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return o.Stop()
}

// Performed returns the actions performed so far, oldest first.
func (o *Operator) Performed() []Performed {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Performed, len(o.performed))
	copy(out, o.performed)
	return out
}

// handle serves one call: check, redeem, and only then perform.
func (o *Operator) handle(ctx context.Context, action string, req micro.Request) {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	log := o.log.With(attrAction, action)

	var cmd Command
	if err := json.Unmarshal(req.Data(), &cmd); err != nil {
		o.refuse(req, log, &Refusal{Code: CodeBadRequest, Message: "the body is not a JSON command {grant, proof, resource, params}"})
		return
	}
	log = log.With(attrResource, cmd.Resource, attrTokenHash, issuer.TokenHash(cmd.Grant))
	// Refuse what this service cannot do before redeeming: a redeemed
	// grant is used up, and must not be spent on an action never performed.
	if scope := Scopes[action]; !strings.HasPrefix(cmd.Resource, scope) || len(cmd.Resource) == len(scope) {
		o.refuse(req, log, &Refusal{Code: CodeOutOfScope, Message: fmt.Sprintf("%s acts on %s<name> only", action, scope)})
		return
	}
	proof, err := redeem.ParseProof(cmd.Proof)
	if err != nil {
		o.refuse(req, log, &Refusal{Code: redeem.Code(err), Message: err.Error()})
		return
	}
	want := redeem.Want{Action: action, Resource: cmd.Resource, Params: cmd.Params}
	claims, err := o.cfg.Redeemer.Redeem(ctx, cmd.Grant, proof, want)
	if err != nil {
		o.refuse(req, log, &Refusal{Code: redeem.Code(err), Message: err.Error()})
		return
	}
	res := o.perform(log, want, claims)
	if err := req.RespondJSON(res); err != nil {
		log.Warn("respond", "error", err)
	}
}

// perform is the simulated action: a log line and a record.
func (o *Operator) perform(log *slog.Logger, want redeem.Want, c issuer.Claims) Result {
	o.mu.Lock()
	o.performed = append(o.performed, Performed{
		Action: want.Action, Resource: want.Resource, Params: want.Params,
		RequestID: c.RequestID, Holder: c.Holder, At: time.Now(),
	})
	o.mu.Unlock()
	done := map[string]string{ActionRestart: "restarted ", ActionDeploy: "applied migrations to "}[want.Action] + want.Resource
	log.Info(done, attrRequest, c.RequestID)
	return Result{RequestID: c.RequestID, Action: want.Action, Resource: want.Resource, Done: done}
}

func (o *Operator) refuse(req micro.Request, log *slog.Logger, r *Refusal) {
	log.Info("refused", attrCode, r.Code, "reason", r.Message)
	body, _ := json.Marshal(r)
	// A header value is one line.
	desc := strings.NewReplacer("\r", " ", "\n", " ").Replace(r.Message)
	if err := req.Error(r.Code, desc, body); err != nil {
		log.Warn("respond", "error", err)
	}
}
