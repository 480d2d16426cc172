package events

import (
	"time"

	"github.com/google/uuid"
)

// PrincipalRef names a principal: its domain and its name.
type PrincipalRef struct {
	Domain string `json:"domain"`
	Name   string `json:"name"`
}

// ID is "domain/name".
func (p PrincipalRef) ID() string { return p.Domain + "/" + p.Name }

// Requested is the data of a request: one action on one resource.
type Requested struct {
	Prev       string            `json:"prev"`
	Domain     string            `json:"domain"` // the target domain, signed: the subject's`
	Requester  PrincipalRef      `json:"requester"`
	Identity   string            `json:"identity"` // the requester's user JWT
	Action     string            `json:"action"`
	Resource   string            `json:"resource"` // path within the target domain
	Params     map[string]string `json:"params,omitempty"`
	Urgency    string            `json:"urgency"`
	Reason     string            `json:"reason,omitempty"`
	Ticket     string            `json:"ticket,omitempty"`
	TTLSeconds int64             `json:"ttl_seconds,omitempty"`
	HolderXKey string            `json:"holder_xkey"` // curve25519 key the grant is sealed to
}

// Rejected is the data of a request refused before evaluation.
type Rejected struct {
	Prev      string `json:"prev"`
	RefSeq    uint64 `json:"ref_seq"`
	RefDigest string `json:"ref_digest,omitempty"`
	Code      string `json:"code"`
	Reason    string `json:"reason"`
}

// Refused is the data of an input event a component refused; it does not
// change the request's state.
type Refused struct {
	Prev      string `json:"prev"`
	RefSeq    uint64 `json:"ref_seq"`
	RefKind   string `json:"ref_kind"`
	RefSigner string `json:"ref_signer,omitempty"`
	Code      string `json:"code"`
	Reason    string `json:"reason"`
}

// Counted is the approval component's answer to a vote it counted that
// decided nothing yet (the flows still wait for others): every vote is
// answered, by counted, refused, or the decision it made. The voter waits
// for the answer, not for a timer.
type Counted struct {
	Prev   string       `json:"prev"`
	RefSeq uint64       `json:"ref_seq"` // the vote
	Voter  PrincipalRef `json:"voter"`
}

// EvaluatedPrincipal is the verified requester as the policy saw it.
type EvaluatedPrincipal struct {
	Domain string   `json:"domain"`
	Name   string   `json:"name"`
	Key    string   `json:"key"`
	Groups []string `json:"groups,omitempty"`
}

// Stage is one stage of an approval flow, as recorded in the evaluation.
type Stage struct {
	Name            string      `json:"name"`
	Groups          []string    `json:"groups,omitempty"`
	Principals      []string    `json:"principals,omitempty"` // "domain/name"
	Required        int         `json:"required"`
	AllGroups       bool        `json:"all_groups,omitempty"` // each listed group must approve too
	DeadlineSeconds int64       `json:"deadline_seconds"`     // from the stage's start
	Escalate        *Escalation `json:"escalate,omitempty"`
}

// Escalation adds approvers to a stage still open some time after it began.
type Escalation struct {
	AfterSeconds int64    `json:"after_seconds"`
	Groups       []string `json:"groups,omitempty"`
	Principals   []string `json:"principals,omitempty"`
}

// Flow is an approval flow, recorded whole in the evaluation so that the
// approval decision depends on the stream alone, not on today's config.
type Flow struct {
	Name       string `json:"name"`
	DenyQuorum int    `json:"deny_quorum,omitempty"` // denials that end the request; 0 means 1
	// RepeatApprovers lets one approver approve several stages (one vote
	// each); by default an approver counts once across the flow.
	RepeatApprovers bool    `json:"repeat_approvers,omitempty"`
	Stages          []Stage `json:"stages"`
}

// Outcomes of an evaluation.
const (
	OutcomeAllow  = "allow"
	OutcomeReview = "review"
	OutcomeDeny   = "deny"
)

// Evaluated is the policy decision for a request.
type Evaluated struct {
	Prev          string             `json:"prev"`
	Outcome       string             `json:"outcome"`
	Reasons       []string           `json:"reasons"`
	Errors        []string           `json:"errors,omitempty"`
	PolicyDigest  string             `json:"policy_digest"`
	FlowsDigest   string             `json:"flows_digest"`
	Principal     EvaluatedPrincipal `json:"principal"`
	Context       map[string]any     `json:"context,omitempty"`
	MaxTTLSeconds int64              `json:"max_ttl_seconds,omitempty"`
	BreakGlass    bool               `json:"break_glass,omitempty"`
	Flows         []Flow             `json:"flows,omitempty"`
	ExpiresAt     *time.Time         `json:"expires_at,omitempty"`
	// StateRevisions are the entries of the resource-state bucket the
	// decision read (the resource's and its domain's, by bucket key) and
	// the revision of each it saw, 0 for none; their values are in
	// Context (resource_state, domain_state).
	StateRevisions map[string]uint64 `json:"state_revisions,omitempty"`
}

// Vote decisions.
const (
	DecisionApprove = "approve"
	DecisionDeny    = "deny"
)

// Voted is an approver's answer.
type Voted struct {
	Prev          string       `json:"prev"`
	Domain        string       `json:"domain"` // the request's domain, signed: the subject's
	Voter         PrincipalRef `json:"voter"`
	Identity      string       `json:"identity"`
	Decision      string       `json:"decision"`
	Reason        string       `json:"reason,omitempty"`
	RequestDigest string       `json:"request_digest"` // digest of the requested event shown to the approver
}

// Approved says a request's flows are satisfied.
type Approved struct {
	Prev      string         `json:"prev"`
	Approvers []PrincipalRef `json:"approvers"`
}

// Denied says an eligible approver denied the request.
type Denied struct {
	Prev   string         `json:"prev"`
	By     []PrincipalRef `json:"by"`
	Reason string         `json:"reason,omitempty"`
}

// Expired says a pending request reached its deadline.
type Expired struct {
	Prev     string    `json:"prev"`
	Deadline time.Time `json:"deadline"`
}

// Granted carries the grant sealed to the requester; only its hash is in clear.
type Granted struct {
	Prev       string    `json:"prev"`
	TokenHash  string    `json:"token_hash"`
	Sealed     string    `json:"sealed"`    // base64 NaCl box, from SealedBy to the holder's xkey
	SealedBy   string    `json:"sealed_by"` // the issuer's curve25519 public key
	Holder     string    `json:"holder"`    // the requester's user public key
	NotBefore  time.Time `json:"not_before"`
	ExpiresAt  time.Time `json:"expires_at"`
	Evidence   string    `json:"evidence"` // digest of the last event before the grant
	BreakGlass bool      `json:"break_glass,omitempty"`
}

// Redemption outcomes.
const (
	RedemptionRedeemed = "redeemed"
	RedemptionRefused  = "refused"
)

// Redeemed records an attempt to redeem a grant at its target domain: the
// one that consumed it, or one that was refused, with the reason.
type Redeemed struct {
	Prev      string `json:"prev"`
	Outcome   string `json:"outcome"` // redeemed | refused
	Code      string `json:"code,omitempty"`
	Reason    string `json:"reason,omitempty"`
	TokenHash string `json:"token_hash"`
	Holder    string `json:"holder,omitempty"`  // who presented it, when known
	Service   string `json:"service,omitempty"` // the redeeming service's name
}

// Revoked withdraws a request or its grant; nothing is granted or redeemed
// after it.
type Revoked struct {
	Prev   string       `json:"prev"`
	By     PrincipalRef `json:"by"`
	Reason string       `json:"reason"`
}

// Revoke is a principal's request to revoke a request or its grant. The
// approval component decides (the requester may always withdraw their own;
// anyone else needs a Cedar permit for Action::"revoke") and answers with
// revoked or refused.
type Revoke struct {
	Prev     string       `json:"prev"`
	Domain   string       `json:"domain"` // the request's domain, signed: the subject's
	By       PrincipalRef `json:"by"`
	Identity string       `json:"identity"`
	Reason   string       `json:"reason"`
}

// Lock targets.
const (
	LockPrincipal = "principal" // "domain/name"
	LockKey       = "key"       // a user public key
	LockDomain    = "domain"    // a domain name
)

// LockTarget is what a lock blocks: new grants to, and redemptions by, it.
type LockTarget struct {
	Type string `json:"type"` // principal | key | domain
	Name string `json:"name"`
}

// Lock is a principal's request to lock (or unlock) a target. A lock has
// its own id and history: writ.<domain>.<lock-id>.lock, then .locked.
type Lock struct {
	Prev     string       `json:"prev"`
	Domain   string       `json:"domain"`
	By       PrincipalRef `json:"by"`
	Identity string       `json:"identity"`
	Target   LockTarget   `json:"target"`
	Unlock   bool         `json:"unlock,omitempty"`
	Reason   string       `json:"reason"`
}

// Locked records that the approval component locked (or unlocked) a target.
type Locked struct {
	Prev   string       `json:"prev"`
	By     PrincipalRef `json:"by"`
	Target LockTarget   `json:"target"`
	Unlock bool         `json:"unlock,omitempty"`
	Reason string       `json:"reason"`
}

// State operations.
const (
	StateSet    = "set"    // replace the entry's attributes (or, with merge, add to them)
	StateDelete = "delete" // remove the entry
)

// State is a principal's request to set (or delete) the state of a
// resource, or of the domain itself: the facts policies read as
// resource.state and context.domain_state. Like a lock it has its own id
// and history: writ.<domain>.<id>.state, then .stated (or .refused). The
// approval component decides (a Cedar permit for Action::"set-state").
type State struct {
	Prev     string       `json:"prev"`
	Domain   string       `json:"domain"` // the entry's domain, signed: the subject's
	By       PrincipalRef `json:"by"`
	Identity string       `json:"identity"`
	// Path is the resource's path in Domain; "" names the domain's own
	// entry.
	Path  string            `json:"path,omitempty"`
	Op    string            `json:"op"`              // set | delete
	Attrs map[string]string `json:"attrs,omitempty"` // set: the attributes named
	// Merge, on a set, keeps the attributes the ask does not name.
	Merge  bool   `json:"merge,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Stated records that the approval component changed a state entry as a
// State ask said: the entry as written (after a merge, the whole entry),
// or its removal. The trail's latest Stated for an entry is what the
// writ-resource-state bucket holds.
type Stated struct {
	Prev   string            `json:"prev"`
	By     PrincipalRef      `json:"by"`
	Path   string            `json:"path,omitempty"` // "" for the domain's own entry
	Op     string            `json:"op"`             // set | delete
	Attrs  map[string]string `json:"attrs,omitempty"`
	Reason string            `json:"reason,omitempty"`
}

// Escalated adds approvers to a flow's open stage, its escalation delay
// having passed.
type Escalated struct {
	Prev       string   `json:"prev"`
	Flow       string   `json:"flow"`
	Stage      int      `json:"stage"`
	Groups     []string `json:"groups,omitempty"`
	Principals []string `json:"principals,omitempty"`
}

// Alerts.
const (
	AlertBreakGlass    = "break-glass"    // granted at once, to be reviewed after the fact
	AlertReviewOverdue = "review-overdue" // the after-the-fact review missed its deadline
	// AlertReviewDenied: reviewers denied the break-glass use after the
	// fact, and the grant was revoked (alerted.v2).
	AlertReviewDenied = "review-denied"

	// A stream, bucket or durable consumer Writ relies on was weakened
	// (its reason says how), and issuance stopped; then it was set right
	// again, and issuance resumed. Both live under GuardID.
	AlertWeakened = "weakened"
	AlertRestored = "restored"
)

// IsGuardAlert reports whether an alert is one of the guard's, which live
// under an id of their own (GuardID) rather than in a request's history.
func IsGuardAlert(alert string) bool { return alert == AlertWeakened || alert == AlertRestored }

// Alerted is something people must look at.
type Alerted struct {
	Prev   string `json:"prev"`
	Alert  string `json:"alert"`
	Reason string `json:"reason"`
}

// Review outcomes.
const (
	ReviewApproved = "approved"
	ReviewDenied   = "denied"
)

// Reviewed closes a break-glass grant's after-the-fact review: approved by
// the counted approvers, or denied by the counted deniers (whereupon the
// grant is revoked and an alert raised). A reviewed.v1 event has no
// outcome and is an approval.
type Reviewed struct {
	Prev      string         `json:"prev"`
	Outcome   string         `json:"outcome,omitempty"`   // approved | denied; "" (v1) is approved
	Approvers []PrincipalRef `json:"approvers,omitempty"` // approved: who approved
	By        []PrincipalRef `json:"by,omitempty"`        // denied: who denied
	Reason    string         `json:"reason,omitempty"`    // denied: the first denial's reason
}

// Denied reports whether the review denied the break-glass use.
func (r *Reviewed) Denied() bool { return r.Outcome == ReviewDenied }

// Policy records a policy set and flows file exactly as the pipeline loaded
// them, so that any evaluation can be re-run from the trail. It lives under
// its own id, derived from the two digests (PolicyID), once.
type Policy struct {
	Prev         string `json:"prev"`
	PolicyDigest string `json:"policy_digest"`
	PolicySource string `json:"policy_source"`
	FlowsDigest  string `json:"flows_digest"`
	FlowsSource  string `json:"flows_source"`
}

// policyNamespace is the UUID namespace of policy record ids.
var policyNamespace = uuid.MustParse("6f3c2d3e-7a71-4c0e-9a35-5b2f3e8d0c11")

// PolicyID is the id a policy set and flows are recorded under: the same
// for the same texts, so they are recorded once.
func PolicyID(policyDigest, flowsDigest string) string {
	return uuid.NewSHA1(policyNamespace, []byte(policyDigest+"\x00"+flowsDigest)).String()
}

// Checkpoint is a signed head of the Merkle tree (RFC 6962) whose leaves are
// the audit stream's messages, in stream order, from its first: anyone who
// holds a checkpoint can tell whether the stream still holds exactly what
// it covered. Every checkpoint of a domain lives under one id
// (CheckpointID), chained by prev, so that each covers the one before it.
type Checkpoint struct {
	Prev     string    `json:"prev"`
	Stream   string    `json:"stream"`
	TreeSize uint64    `json:"tree_size"` // leaves: the messages covered
	FirstSeq uint64    `json:"first_seq"` // stream sequence of the first leaf
	LastSeq  uint64    `json:"last_seq"`  // stream sequence of the last leaf
	LastTime time.Time `json:"last_time"` // when the stream stored the last leaf
	Root     string    `json:"root"`      // "sha256:<hex>"
	// Frontier is the compact range of the tree (the roots of its perfect
	// subtrees, left to right), from which the next checkpoint continues
	// without reading the stream again.
	Frontier []string `json:"frontier"`
}

// Witnessed records, in the witness domain's own trail, a checkpoint another
// domain published: deleting or rewriting that domain's stream then shows
// against a record its administrators cannot reach.
type Witnessed struct {
	Prev       string `json:"prev"`
	Domain     string `json:"domain"`     // the domain whose checkpoint this is
	Seq        uint64 `json:"seq"`        // its sequence in that domain's stream
	Subject    string `json:"subject"`    // as stored there
	Signer     string `json:"signer"`     // its auditor's key
	Signature  string `json:"signature"`  // over Checkpoint
	Checkpoint string `json:"checkpoint"` // the checkpoint event's body, verbatim
}

// auditNamespace is the UUID namespace of checkpoint and witness series.
var auditNamespace = uuid.MustParse("0e5a8f6c-3b1d-4a9e-8c2f-7d4b6a1e9f30")

// CheckpointID is the id under which every checkpoint of domain's stream is
// recorded.
func CheckpointID(domain string) string {
	return uuid.NewSHA1(auditNamespace, []byte("checkpoints\x00"+domain)).String()
}

// GuardID is the id under which the guard of domain's pipeline records
// that what Writ relies on was weakened, and set right again.
func GuardID(domain string) string {
	return uuid.NewSHA1(auditNamespace, []byte("guard\x00"+domain)).String()
}

// WitnessID is the id under which a witness records domain's checkpoints.
func WitnessID(domain string) string {
	return uuid.NewSHA1(auditNamespace, []byte("witnessed\x00"+domain)).String()
}
