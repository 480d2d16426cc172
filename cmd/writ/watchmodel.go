package main

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/writ-dev/writ/events"
	"github.com/writ-dev/writ/identity"
	"github.com/writ-dev/writ/request"
)

// The watch tool is a model (the requests this approver may answer, the
// selection, a reason being typed) that turns updates, keys and line
// commands into actions; the terminal and line front ends only feed it and
// carry its actions out. It does no I/O and reads no clock.

// actionKind is what the model asks its front end to do.
type actionKind uint8

const (
	actNone actionKind = iota
	actVote
	actQuit
)

// watchAction is a vote to cast (bound to the digest shown), or quit.
type watchAction struct {
	Kind    actionKind
	Domain  string
	ID      string
	Digest  string // the request digest the approver was shown
	Approve bool
	Reason  string
}

// Key names for the keys that are not printable characters.
const (
	keyUp        = "<up>"
	keyDown      = "<down>"
	keyEnter     = "<enter>"
	keyEsc       = "<esc>"
	keyBackspace = "<backspace>"
	keyCtrlC     = "<ctrl-c>"
)

type watchModel struct {
	me     identity.Principal
	items  []requestView // what me may answer now, in arrival order
	sel    int
	prompt bool   // typing the reason for a deny
	input  []rune // the reason so far
	status string // the last result, or a hint
}

func newWatchModel(me identity.Principal) *watchModel { return &watchModel{me: me} }

// index finds a request by domain and id: the same id may be in two
// domains, which are two requests.
func (m *watchModel) index(domain, id string) int {
	return slices.IndexFunc(m.items, func(v requestView) bool { return v.Domain == domain && v.ID == id })
}

func (m *watchModel) selected() (requestView, bool) {
	if m.sel < 0 || m.sel >= len(m.items) {
		return requestView{}, false
	}
	return m.items[m.sel], true
}

// Update takes a request's latest state and returns what changed, as a
// line for the line front end ("" when nothing this approver cares about
// did).
func (m *watchModel) Update(s request.State, records []events.Record, now time.Time) string {
	eligible := s.CanVote(m.me) == nil
	i := m.index(s.Domain, s.ID)
	v := viewOf(s, records)
	switch {
	case eligible && i < 0:
		m.items = append(m.items, v)
		return pendingLine(v, now)
	case eligible:
		old := m.items[i]
		m.items[i] = v
		if len(old.Votes) != len(v.Votes) || flowsKey(old) != flowsKey(v) {
			return fmt.Sprintf("UPDATED  %s  %s  approved by: %s", v.ID, flowsKey(v), orNobody(v.approvedBy()))
		}
		return ""
	case i < 0:
		return ""
	}
	old := m.items[i]
	m.remove(i)
	switch {
	case old.isReview() && !v.isReview():
		return fmt.Sprintf("REVIEWED %s  %s", v.ID, reviewSummary(v))
	case !old.isReview() && !s.Status.IsPending():
		return fmt.Sprintf("%-8s %s  %s", strings.ToUpper(v.Status), v.ID, describeOutcome(s).Reason)
	}
	return fmt.Sprintf("ANSWERED %s  %s", v.ID, flowsKey(v))
}

func (m *watchModel) remove(i int) {
	if m.prompt && i == m.sel {
		// The request being denied went away: stop typing for it.
		m.prompt, m.input = false, nil
		m.status = fmt.Sprintf("%s is no longer yours to answer", m.items[i].ID)
	}
	m.items = slices.Delete(m.items, i, i+1)
	if m.sel > i || m.sel >= len(m.items) {
		m.sel = max(m.sel-1, 0)
	}
}

func flowsKey(v requestView) string {
	var parts []string
	for _, f := range v.Flows {
		parts = append(parts, f.Summary)
	}
	return strings.Join(parts, "; ")
}

func orNobody(s []string) string {
	if len(s) == 0 {
		return "nobody yet"
	}
	return strings.Join(s, ", ")
}

// Key handles one key press of the terminal front end.
func (m *watchModel) Key(k string) watchAction {
	if k == keyCtrlC {
		return watchAction{Kind: actQuit}
	}
	if m.prompt {
		switch k {
		case keyEsc:
			m.prompt, m.input, m.status = false, nil, "deny cancelled"
		case keyBackspace:
			if len(m.input) > 0 {
				m.input = m.input[:len(m.input)-1]
			}
		case keyEnter:
			reason := strings.TrimSpace(string(m.input))
			if reason == "" {
				m.status = "a deny needs a reason (Esc cancels)"
				return watchAction{}
			}
			m.prompt, m.input = false, nil
			return m.vote(false, reason)
		default:
			if utf8.RuneCountInString(k) == 1 {
				m.input = append(m.input, []rune(k)...)
			}
		}
		return watchAction{}
	}
	switch k {
	case keyUp, "k":
		m.sel = max(m.sel-1, 0)
	case keyDown, "j":
		m.sel = max(min(m.sel+1, len(m.items)-1), 0)
	case "a":
		return m.vote(true, "")
	case "d":
		if _, ok := m.selected(); ok {
			m.prompt, m.input, m.status = true, nil, ""
		}
	case "q", keyEsc:
		return watchAction{Kind: actQuit}
	}
	return watchAction{}
}

func (m *watchModel) vote(approve bool, reason string) watchAction {
	v, ok := m.selected()
	if !ok {
		m.status = "nothing to answer"
		return watchAction{}
	}
	verb := "approving"
	if !approve {
		verb = "denying"
	}
	m.status = fmt.Sprintf("%s %s…", verb, v.ID)
	return watchAction{Kind: actVote, Domain: v.Domain, ID: v.ID, Digest: v.RequestDigest, Approve: approve, Reason: reason}
}

// errCommand is a line command the model cannot carry out.
var errCommand = errors.New("command")

// Command handles one line of the line front end: "approve ID [reason]",
// "deny ID reason", "list" (returns no action; the caller prints), "quit".
// ID may be a unique prefix of a request shown, or DOMAIN/ID (prefix).
func (m *watchModel) Command(line string) (watchAction, error) {
	verb, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
	id, reason, _ := strings.Cut(strings.TrimSpace(rest), " ")
	reason = strings.TrimSpace(reason)
	switch verb {
	case "", "list", "help":
		return watchAction{}, nil
	case "quit", "exit":
		return watchAction{Kind: actQuit}, nil
	case "approve", "deny":
	default:
		return watchAction{}, fmt.Errorf("%w: unknown %q; want: approve ID [reason] | deny ID reason | list | quit", errCommand, verb)
	}
	if id == "" {
		return watchAction{}, fmt.Errorf("%w: %s needs a request id", errCommand, verb)
	}
	approve := verb == "approve"
	if !approve && reason == "" {
		return watchAction{}, fmt.Errorf("%w: deny needs a reason: deny ID reason", errCommand)
	}
	// DOMAIN/ID names a request whose id is in two domains.
	domain, prefix, ok := strings.Cut(id, "/")
	if !ok {
		domain, prefix = "", id
	}
	var found []int
	for i, v := range m.items {
		if strings.HasPrefix(v.ID, prefix) && (domain == "" || v.Domain == domain) {
			found = append(found, i)
		}
	}
	switch len(found) {
	case 0:
		return watchAction{}, fmt.Errorf("%w: %s is not a request you may answer now", errCommand, id)
	case 1:
	default:
		var names []string
		for _, i := range found {
			names = append(names, m.items[i].Domain+"/"+m.items[i].ID)
		}
		return watchAction{}, fmt.Errorf("%w: %s matches %d requests (%s): name one as DOMAIN/ID", errCommand, id, len(found), strings.Join(names, ", "))
	}
	m.sel = found[0]
	return m.vote(approve, reason), nil
}

// Result records the outcome of a vote the model asked for.
func (m *watchModel) Result(a watchAction, msg string, err error) {
	if err != nil {
		m.status = fmt.Sprintf("%s: %v", a.ID, err)
		return
	}
	m.status = msg
}

// Render draws the screen: the list, the selected request's facts, the
// last result and the keys. width limits the list lines (0: no limit).
func (m *watchModel) Render(now time.Time, width int) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "writ approvals watch, as %s: %d request(s) and review(s) you may answer now\n\n", m.me.ID(), len(m.items))
	if len(m.items) == 0 {
		b.WriteString("  (none yet; new requests appear here as they come)\n")
	}
	for i, v := range m.items {
		mark := "  "
		if i == m.sel {
			mark = "> "
		}
		line := mark + listLine(v, now)
		if width > 0 && utf8.RuneCountInString(line) > width {
			line = string([]rune(line)[:max(width-1, 1)]) + "…"
		}
		b.WriteString(line + "\n")
	}
	if v, ok := m.selected(); ok {
		fmt.Fprintf(&b, "\nrequest %s in %s\n", v.ID, v.Domain)
		writeFacts(&b, v, now, "  ")
	}
	b.WriteString("\n")
	if m.status != "" {
		b.WriteString(m.status + "\n")
	}
	if m.prompt {
		fmt.Fprintf(&b, "deny reason: %s_   (Enter sends, Esc cancels)\n", string(m.input))
	} else {
		b.WriteString("↑/↓ or j/k: move   a: approve   d: deny (asks a reason)   q: quit\n")
	}
	return b.String()
}

// listLine is one request in the list.
func listLine(v requestView, now time.Time) string {
	r := v.Requested
	if r == nil {
		return v.ID
	}
	if v.isReview() {
		return fmt.Sprintf("%s  REVIEW %s used break-glass: %s on %s/%s  [%s]  %s left", v.ID, r.Requester, r.Action, v.Domain, r.Resource, r.Urgency, countdown(v.Deadline, now))
	}
	return fmt.Sprintf("%s  %s wants %s on %s/%s  [%s]  %s left", v.ID, r.Requester, r.Action, v.Domain, r.Resource, r.Urgency, countdown(v.Deadline, now))
}

// pendingLine is a request this approver may answer, on one line.
func pendingLine(v requestView, now time.Time) string {
	r := v.Requested
	head := "PENDING "
	if v.isReview() {
		head = "REVIEW  "
	}
	if r == nil {
		return head + " " + v.ID
	}
	line := fmt.Sprintf("%s %s  %s (origin %s) wants %s on %s/%s  urgency=%s  %s  approved by: %s  expires in %s",
		head, v.ID, r.Requester, v.Origin, r.Action, v.Domain, r.Resource, r.Urgency, flowsKey(v), orNobody(v.approvedBy()), countdown(v.Deadline, now))
	if v.isReview() {
		// Granted already: the reviewers answer after the fact, and a
		// deny revokes the grant.
		line = fmt.Sprintf("%s %s  %s (origin %s) used break-glass for %s on %s/%s (%s)  urgency=%s  %s  approved by: %s  review due in %s",
			head, v.ID, r.Requester, v.Origin, r.Action, v.Domain, r.Resource, v.Status, r.Urgency, flowsKey(v), orNobody(v.approvedBy()), countdown(v.Deadline, now))
	}
	if r.Reason != "" {
		line += fmt.Sprintf("  reason=%q", r.Reason)
	}
	if r.Ticket != "" {
		line += "  ticket=" + strconv.Quote(r.Ticket)
	}
	if len(r.Params) > 0 {
		line += "  params=" + events.FormatParams(r.Params)
	}
	if r.TTLSeconds > 0 {
		line += fmt.Sprintf("  ttl=%ds", r.TTLSeconds)
	}
	return line + "  digest=" + v.RequestDigest
}

// decodeKeys splits what a terminal in raw mode sent into key names.
func decodeKeys(b []byte) []string {
	var keys []string
	for len(b) > 0 {
		switch {
		case bytes.HasPrefix(b, []byte("\x1b[A")), bytes.HasPrefix(b, []byte("\x1bOA")):
			keys, b = append(keys, keyUp), b[3:]
			continue
		case bytes.HasPrefix(b, []byte("\x1b[B")), bytes.HasPrefix(b, []byte("\x1bOB")):
			keys, b = append(keys, keyDown), b[3:]
			continue
		case len(b) >= 3 && b[0] == 0x1b && b[1] == '[':
			// Another escape sequence: skip it whole.
			i := 2
			for i < len(b) && (b[i] < 0x40 || b[i] > 0x7e) {
				i++
			}
			b = b[min(i+1, len(b)):]
			continue
		}
		switch b[0] {
		case 0x1b:
			keys = append(keys, keyEsc)
		case '\r', '\n':
			keys = append(keys, keyEnter)
		case 0x7f, 0x08:
			keys = append(keys, keyBackspace)
		case 0x03:
			keys = append(keys, keyCtrlC)
		default:
			r, n := utf8.DecodeRune(b)
			if r != utf8.RuneError && r >= 0x20 {
				keys = append(keys, string(r))
			}
			b = b[n:]
			continue
		}
		b = b[1:]
	}
	return keys
}
