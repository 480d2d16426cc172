package access

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/jwt/v2"

	"github.com/writ-dev/writ/audit"
	"github.com/writ-dev/writ/consumers"
	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/internal/callout"
	"github.com/writ-dev/writ/internal/locks"
	"github.com/writ-dev/writ/internal/state"
	"github.com/writ-dev/writ/notify"
	"github.com/writ-dev/writ/redeem"
)

// Role is what a connection is for. The zero value is no role.
type Role string

// The roles. Reader, Principal, Redeemer, Leaf and Operator are people's and
// services' roles; the others are the pipeline's components.
const (
	Reader    Role = "reader"    // reads histories and notices: auditors, dashboards
	Principal Role = "principal" // a reader that also asks: requests, votes, revocations, locks, state
	Policy    Role = Role(identity.RolePolicy)
	Approval  Role = Role(identity.RoleApproval)
	Issuer    Role = Role(identity.RoleIssuer)
	Auditor   Role = Role(identity.RoleAuditor)
	Notifier  Role = "notifier"
	Redeemer  Role = Role(identity.RoleRedeemer) // a target's service: consumes grants once
	Leaf      Role = "leaf"                      // another domain's server, linked as a leafnode spoke
	Operator  Role = "operator"                  // every right; break-glass only
	// CalloutSystem is a user of the system account of the server writ
	// callout answers for: it lists that server's connections and ends
	// those of revoked grants and locked holders (callout.SystemSubjects),
	// and nothing else. It is not a user of the domain's account.
	CalloutSystem Role = "callout-system"
)

// Roles lists every role, people's first.
var Roles = []Role{Reader, Principal, Redeemer, Leaf, Operator, Policy, Approval, Issuer, Auditor, Notifier, CalloutSystem}

// Components lists the roles of the pipeline's components.
var Components = []Role{Policy, Approval, Issuer, Auditor, Notifier}

// ErrUnknownRole is returned by ParseRole.
var ErrUnknownRole = errors.New("unknown role")

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	if r := Role(s); slices.Contains(Roles, r) {
		return r, nil
	}
	names := make([]string, len(Roles))
	for i, r := range Roles {
		names[i] = string(r)
	}
	return "", fmt.Errorf("%w %q: want one of %s", ErrUnknownRole, s, strings.Join(names, ", "))
}

func (r Role) String() string { return string(r) }

// IsComponent reports whether r is one of the pipeline's components.
func (r Role) IsComponent() bool { return slices.Contains(Components, r) }

// Scope is what a role's permissions are computed for: one domain's
// streams, the durable consumers a component reads, and the user key whose
// inbox the connection may hear.
type Scope struct {
	Domain     string
	Stream     string // audit stream; default WRIT
	Timers     string // timer stream; default WRIT_TIMERS
	Queue      string // notifier's delivery queue; default WRIT_NOTIFY
	DeadLetter string // notifier's dead letters; default WRIT_DEADLETTER
	// Consumers are the durable consumers a component reads (see
	// consumers.Env.DurablesOf). Only components have any.
	Consumers []consumers.Durable
	// User is the connection's user public key: it may subscribe only
	// under InboxPrefix(Domain, User). Empty: no inbox (a leafnode).
	User string
	// Spoke is the domain of the leafnode spoke a Leaf role is for.
	Spoke string
	// Behind are the domains whose servers reach this hub through the
	// Leaf's link besides the spoke's own: the spokes of a hub that links
	// as a spoke of this one (a hub of hubs). Their events, inboxes and
	// reads cross the link too; no other domain's do.
	Behind []string
}

func (s *Scope) defaults() {
	if s.Stream == "" {
		s.Stream = consumers.DefaultStream
	}
	if s.Timers == "" {
		s.Timers = consumers.DefaultTimersStream
	}
	if s.Queue == "" {
		s.Queue = notify.DefaultNotifyStream
	}
	if s.DeadLetter == "" {
		s.DeadLetter = notify.DefaultDeadLetterStream
	}
}

// InboxPrefix is where a connection hears replies (identity.InboxPrefix).
func InboxPrefix(domain, user string) string { return identity.InboxPrefix(domain, user) }

// ServiceSubjects are those of the services that act only on a redeemed
// grant (act.<service or domain>.<action>...; see package callout and
// examples/target-service): principals call them, redeemers serve them.
const ServiceSubjects = "act.>"

// Buckets Writ keeps, by who writes them.
var (
	bucketsApproval = []string{locks.Bucket, state.Bucket, redeem.BucketRevocations}
	bucketsRedeemer = []string{redeem.BucketUsed, redeem.BucketNonces}
	// Every bucket: read by the components and redeemers that watch them.
	bucketsAll = []string{locks.Bucket, state.Bucket, redeem.BucketRevocations, redeem.BucketUsed, redeem.BucketNonces}
)

func kvStream(bucket string) string { return "KV_" + bucket }

// apis are the two spellings of a JetStream API subject: the local one and
// the one through a JetStream domain ($JS.<domain>.API), which reaches the
// same server's streams when it names its own domain.
func apis(suffix ...string) []string {
	out := make([]string, 0, 2*len(suffix))
	for _, s := range suffix {
		out = append(out, "$JS.API."+s, "$JS.*.API."+s)
	}
	return out
}

// Dangerous are the JetStream API subjects that rewrite or remove stored
// messages, streams or consumers, or administer the server: denied by name
// to every role but the operator (an allow wide enough to match them by
// mistake is still refused).
var Dangerous = apis(
	"STREAM.UPDATE.>", "STREAM.DELETE.>", "STREAM.PURGE.>", "STREAM.MSG.DELETE.>",
	"STREAM.RESTORE.>", "STREAM.SNAPSHOT.>", "STREAM.PEER.REMOVE.>", "STREAM.LEADER.STEPDOWN.>",
	"CONSUMER.DELETE.>", "CONSUMER.PAUSE.>", "CONSUMER.UNPIN.>", "CONSUMER.LEADER.STEPDOWN.>",
	"CONSUMER.DURABLE.CREATE.>", "META.>", "SERVER.>", "ACCOUNT.>",
)

// Permissions returns the permissions of a connection that holds roles
// (several: what any of them may do, as for a replica running several
// components) in scope. The operator's are everything; a Leaf's are what a
// spoke may send into this hub and hear from it (publish and subscribe are
// seen from the spoke's side), and it holds no other role.
func Permissions(s Scope, roles ...Role) (jwt.Permissions, error) {
	s.defaults()
	if !identity.ValidDomainName(s.Domain) {
		return jwt.Permissions{}, fmt.Errorf("access: invalid domain %q", s.Domain)
	}
	if len(roles) == 0 {
		return jwt.Permissions{}, errors.New("access: name a role")
	}
	if slices.Contains(roles, Operator) {
		return jwt.Permissions{Pub: jwt.Permission{Allow: []string{">"}}, Sub: jwt.Permission{Allow: []string{">"}}}, nil
	}
	var p perms
	if slices.Contains(roles, Leaf) {
		if len(roles) > 1 {
			return jwt.Permissions{}, errors.New("access: a leaf holds no other role")
		}
		if !identity.ValidDomainName(s.Spoke) {
			return jwt.Permissions{}, fmt.Errorf("access: a leaf role needs the spoke's domain (got %q)", s.Spoke)
		}
		for _, d := range s.Behind {
			if !identity.ValidDomainName(d) || d == s.Domain {
				return jwt.Permissions{}, fmt.Errorf("access: %q is not a domain behind the spoke %s (a domain name, not the hub's own)", d, s.Spoke)
			}
		}
		p.leaf(s)
		return p.done(s), nil
	}
	if s.User == "" {
		return jwt.Permissions{}, fmt.Errorf("access: role %s needs the user key whose inbox it hears", roles[0])
	}
	if slices.Contains(roles, CalloutSystem) {
		if len(roles) > 1 {
			return jwt.Permissions{}, errors.New("access: a callout-system user holds no other role: it lives in another account (the system account)")
		}
		// The connection lists and the disconnection of a client, on
		// every server of the target; answers on its own inbox.
		p.pub(callout.SystemSubjects...)
		p.sub(InboxPrefix(s.Domain, s.User) + ".>")
		return p.done(s), nil
	}
	for _, role := range roles {
		switch role {
		case Reader:
			p.reader(s)
		case Principal:
			p.reader(s)
			p.pub(askSubjects()...)
			p.pub(ServiceSubjects) // call the services that act on grants
		case Redeemer:
			p.reader(s)
			p.emit(s.Domain, identity.RoleRedeemer)
			p.pub("writ." + s.Domain + ".*." + events.KindRefused.String())
			p.watch(bucketsAll...)
			p.write(bucketsRedeemer...)
			p.create(kvStreams(redeem.BucketUsed, redeem.BucketNonces, redeem.BucketRevocations)...)
			// A target's service: it serves the actions it guards
			// (answering on the caller's inbox) and NATS micro's
			// discovery.
			p.sub(ServiceSubjects, "$SRV.>")
			p.resp = &jwt.ResponsePermission{MaxMsgs: 1}
		case Policy, Approval, Issuer, Auditor, Notifier:
			p.component(role, s)
		default:
			return jwt.Permissions{}, fmt.Errorf("access: %w %q", ErrUnknownRole, role)
		}
	}
	p.sub(InboxPrefix(s.Domain, s.User) + ".>")
	p.pub(apis("INFO")...)
	p.denyPub(Dangerous...)
	p.denyPub("$SYS.>")
	p.denySub("$SYS.>")
	return p.done(s), nil
}

// askSubjects are the subjects of the asks a principal signs, in any
// domain (a request in another domain is made there).
func askSubjects() []string {
	var out []string
	for _, k := range events.Kinds() {
		if k.FromPrincipal() {
			out = append(out, events.Prefix+".*.*."+k.String())
		}
	}
	return out
}

func kvStreams(buckets ...string) []string {
	out := make([]string, len(buckets))
	for i, b := range buckets {
		out[i] = kvStream(b)
	}
	return out
}

// reader: direct reads of any domain's audit stream (another domain's
// through its JetStream domain), the stream's info, this domain's dead
// letters, notices of every event, and asking the auditor.
func (p *perms) reader(s Scope) {
	p.pub(apis(
		"DIRECT.GET."+s.Stream, "DIRECT.GET."+s.Stream+".>",
		"STREAM.INFO."+s.Stream,
		"DIRECT.GET."+s.DeadLetter, "DIRECT.GET."+s.DeadLetter+".>", "STREAM.INFO."+s.DeadLetter,
	)...)
	p.pub(audit.CheckpointSubject("*"), audit.AttestSubject("*"))
	p.sub(events.Prefix + ".>")
	// The resource state policies read, as 'writ state get' shows it:
	// direct reads of its bucket's stream, no consumer.
	st := kvStream(state.Bucket)
	p.pub(apis("STREAM.INFO."+st, "DIRECT.GET."+st, "DIRECT.GET."+st+".>")...)
}

// component: its own durable consumers, the kinds it is entitled to sign,
// reads of the audit stream, and the streams and buckets it keeps.
func (p *perms) component(role Role, s Scope) {
	p.pub(apis("DIRECT.GET."+s.Stream, "DIRECT.GET."+s.Stream+".>", "STREAM.INFO."+s.Stream, "STREAM.INFO."+s.Timers)...)
	// Creating a stream that exists with the same configuration is a
	// no-op, and with another one an error: creation cannot weaken one.
	p.create(s.Stream, s.Timers)
	for _, c := range s.Consumers {
		p.pub(apis(
			"CONSUMER.CREATE."+c.Stream+"."+c.Consumer, "CONSUMER.CREATE."+c.Stream+"."+c.Consumer+".>",
			"CONSUMER.INFO."+c.Stream+"."+c.Consumer, "CONSUMER.MSG.NEXT."+c.Stream+"."+c.Consumer,
		)...)
		p.pub("$JS.ACK."+c.Stream+"."+c.Consumer+".>", "$JS.ACK.*.*."+c.Stream+"."+c.Consumer+".>")
	}
	p.emit(s.Domain, identity.Role(role))
	// Any component may refuse what it was handed.
	p.pub("writ." + s.Domain + ".*." + events.KindRefused.String())
	// Every component watches the lock list, and the policy the state.
	p.watch(bucketsAll...)
	p.create(kvStreams(bucketsAll...)...)
	if role == Approval || role == Issuer {
		// The guard (consumers.Guard) runs as one of them: it hears the
		// advisories and reads back every durable consumer of Writ's
		// streams, not only its role's own. Reads only.
		p.sub(consumers.GuardAdvisories...)
		p.pub(apis("CONSUMER.INFO."+s.Stream+".*", "CONSUMER.INFO."+s.Timers+".*", "CONSUMER.INFO."+s.Queue+".*")...)
	}
	switch role {
	case Policy, Issuer:
		// Locked events as they are published: a lock list hears of a
		// lock before any input that comes after it (locks.List).
		p.sub(events.KindFilter(events.KindLocked))
	case Approval:
		// The only writer of the lock and resource-state buckets: it
		// applies the changes it records, and puts back what others do.
		p.write(bucketsApproval...)
		// Deadline timers: schedules it writes, reads back and withdraws.
		p.pub(consumers.TimerSubjects(s.Domain))
		p.pub(apis("DIRECT.GET."+s.Timers, "DIRECT.GET."+s.Timers+".>", "STREAM.MSG.GET."+s.Timers)...)
		// It withdraws timers: purges and deletes in the timers stream,
		// and no other.
		p.exempt("STREAM.PURGE.>")
		p.exempt("STREAM.MSG.DELETE.>")
		p.pub(apis("STREAM.PURGE."+s.Timers, "STREAM.MSG.DELETE."+s.Timers)...)
	case Auditor:
		// Checkpoints on demand and evidence to attest: answered on the
		// asker's inbox.
		p.sub(audit.CheckpointSubject(s.Domain), audit.AttestSubject(s.Domain))
		p.resp = &jwt.ResponsePermission{MaxMsgs: 1}
		// Witnessing: other domains' checkpoints, read through their
		// JetStream domains.
		p.pub("$JS.*.API.DIRECT.GET.>", "$JS.*.API.STREAM.INFO.>")
	case Notifier:
		p.create(s.Queue, s.DeadLetter)
		p.pub(notify.NotifySubjects(s.Domain), notify.DeadLetterSubjects(s.Domain))
		p.pub(apis("STREAM.INFO."+s.Queue, "STREAM.INFO."+s.DeadLetter)...)
	}
}

// leaf: what a spoke may send into the hub, and hear from it. Requests,
// votes and the other asks to any domain; the events of the domains
// behind the link, the spoke's own and, for a hub of hubs, its spokes'
// (so that requesters on this side hear their decisions); direct reads of
// any domain's history; and replies.
//
// Replies cross to their own side only: the spoke hears the inboxes of
// the users of the domains behind it (InboxPrefix) and no others, and
// publishes into other domains' inboxes the answers to their reads of its
// stream and to their asks: the hub's, and another spoke's through the
// hub (an approver in one spoke answers a request of another, which the
// other's flow names them for). (A response permission would narrow that
// to the replies of requests sent to it, but on nats-server 2.15.2 it
// does not follow a reply across a leafnode.) Unable to hear other
// domains' inboxes, a spoke learns only the reply subjects of messages
// that reach it, and every answer that matters is a signed event checked
// on arrival. Reads cross only to the audit streams, and reach the spoke
// only for the domains behind it: a spoke that claimed another domain's
// reads could answer them first, leaving out what it liked.
func (p *perms) leaf(s Scope) {
	// The stream's info too: writ audit verify reads what a stream says it
	// held, to tell messages gone from its start.
	reads := func(domain string) []string {
		return []string{"$JS." + domain + ".API.DIRECT.GET." + s.Stream, "$JS." + domain + ".API.DIRECT.GET." + s.Stream + ".>", "$JS." + domain + ".API.STREAM.INFO." + s.Stream}
	}
	p.pub(askSubjects()...)
	p.pub("_INBOX.*.>")
	p.pub(reads("*")...)
	for _, d := range append([]string{s.Spoke}, s.Behind...) {
		p.pub(events.Prefix + "." + d + ".>")
		p.sub("_INBOX." + d + ".>")
		p.sub(reads(d)...)
	}
	p.sub(events.Prefix + ".>")
	// Never the dangerous API, even through the spoke's JetStream domain.
	p.denyPub(Dangerous...)
	p.denySub(Dangerous...)
}

// emit allows the event kinds role is entitled to sign in domain.
func (p *perms) emit(domain string, role identity.Role) {
	for _, k := range events.Kinds() {
		if events.RoleFor(k) == role {
			p.pub(events.Prefix + "." + domain + ".*." + k.String())
		}
	}
}

// watch allows reading buckets and watching them (an ordered consumer on
// the bucket's stream, which holds no durable a watcher could change).
func (p *perms) watch(buckets ...string) {
	for _, b := range buckets {
		st := kvStream(b)
		p.pub(apis("STREAM.INFO."+st, "DIRECT.GET."+st, "DIRECT.GET."+st+".>", "STREAM.MSG.GET."+st,
			"CONSUMER.CREATE."+st, "CONSUMER.CREATE."+st+".>", "CONSUMER.INFO."+st+".*", "CONSUMER.MSG.NEXT."+st+".*")...)
	}
	// Flow control and heartbeats of the watchers' ordered consumers.
	p.pub("$JS.FC.>")
	// A watcher deletes its consumer when it stops: on a bucket's stream,
	// which holds no durable of Writ's, that is allowed.
	p.exempt("CONSUMER.DELETE.>")
	for _, b := range buckets {
		p.pub(apis("CONSUMER.DELETE." + kvStream(b) + ".*")...)
	}
}

// exempt replaces the wildcard deny of a dangerous API (Dangerous) by a
// deny per stream of Writ's (done adds them), for a role allowed that API
// on some other stream: a deny wins over any allow.
func (p *perms) exempt(api string) {
	if !slices.Contains(p.exempted, api) {
		p.exempted = append(p.exempted, api)
	}
}

// write allows putting (and so deleting: a KV delete is a put with a
// header) entries of buckets.
func (p *perms) write(buckets ...string) {
	for _, b := range buckets {
		p.pub("$KV." + b + ".>")
	}
}

func (p *perms) create(streams ...string) {
	for _, st := range streams {
		p.pub(apis("STREAM.CREATE." + st)...)
	}
}

// exemptable are the dangerous APIs some role needs on a stream that is
// not Writ's audit trail (see exempt).
var exemptable = []string{"STREAM.PURGE.>", "STREAM.MSG.DELETE.>", "CONSUMER.DELETE.>"}

// protected are the streams on which no role but the operator may call
// api: Writ's streams and buckets; for consumer deletes, the streams that
// hold durable consumers (a bucket's hold only watchers' ephemeral ones).
func (s Scope) protected(api string) []string {
	out := []string{s.Stream, s.Timers, s.Queue, s.DeadLetter}
	if api == "CONSUMER.DELETE.>" {
		return out
	}
	return append(out, kvStreams(bucketsAll...)...)
}

type perms struct {
	pubAllow, pubDeny, subAllow, subDeny []string
	resp                                 *jwt.ResponsePermission
	exempted                             []string // wildcard denies this role is exempt from (see exempt)
}

func (p *perms) pub(s ...string)     { p.pubAllow = append(p.pubAllow, s...) }
func (p *perms) sub(s ...string)     { p.subAllow = append(p.subAllow, s...) }
func (p *perms) denyPub(s ...string) { p.pubDeny = append(p.pubDeny, s...) }
func (p *perms) denySub(s ...string) { p.subDeny = append(p.subDeny, s...) }

func (p *perms) done(s Scope) jwt.Permissions {
	// A role exempt from a dangerous API's wildcard deny (allowed it on
	// some stream not of the trail's) gets a deny per stream of Writ's
	// instead, less the ones it is allowed by name.
	deny := slices.DeleteFunc(slices.Clone(p.pubDeny), func(d string) bool {
		return slices.ContainsFunc(p.exempted, func(api string) bool { return strings.HasSuffix(d, "API."+api) })
	})
	for _, api := range p.exempted {
		for _, st := range s.protected(api) {
			for _, d := range apis(strings.TrimSuffix(api, ">")+st, strings.TrimSuffix(api, ">")+st+".>") {
				if !slices.Contains(p.pubAllow, d) {
					deny = append(deny, d)
				}
			}
		}
	}
	out := jwt.Permissions{
		Pub: jwt.Permission{Allow: dedupe(p.pubAllow), Deny: dedupe(deny)},
		Sub: jwt.Permission{Allow: dedupe(p.subAllow), Deny: dedupe(p.subDeny)},
	}
	out.Resp = p.resp
	return out
}

func dedupe(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// Allows reports whether p lets its holder publish to subject (a literal
// subject), as the server decides: matched by an allow (or no allow list at
// all) and by no deny.
func Allows(p jwt.Permission, subject string) bool {
	if len(p.Allow) > 0 && !slices.ContainsFunc(p.Allow, func(f string) bool { return match(f, subject) }) {
		return false
	}
	return !slices.ContainsFunc(p.Deny, func(f string) bool { return match(f, subject) })
}

// match reports whether the subject filter f (with * and >) matches the
// literal subject s.
func match(f, s string) bool {
	ft, st := strings.Split(f, "."), strings.Split(s, ".")
	for i, t := range ft {
		switch {
		case t == ">":
			return len(st) > i
		case i >= len(st):
			return false
		case t != "*" && t != st[i]:
			return false
		}
	}
	return len(ft) == len(st)
}

// Rewrites lists the JetStream API calls on stream that p would let its
// holder make and that rewrite or remove what the stream holds.
func Rewrites(p jwt.Permissions, stream string) []string {
	var out []string
	for _, s := range apis("STREAM.UPDATE."+stream, "STREAM.DELETE."+stream, "STREAM.PURGE."+stream, "STREAM.MSG.DELETE."+stream) {
		// The domain form as the server sees it: any domain name.
		if Allows(p.Pub, strings.Replace(s, "$JS.*.", "$JS.somedomain.", 1)) {
			out = append(out, s)
		}
	}
	return out
}
