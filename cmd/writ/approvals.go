package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/term"

	"github.com/writ-dev/writ/client"
	"github.com/writ-dev/writ/identity"
)

const approvalsUsage = "approvals watch|list --creds FILE [--domain D] [--json (list)] [--once (watch)]"

func runApprovals(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return approvals(ctx, args, os.Stdin, stdout, stderr)
}

// approvals is runApprovals with its input: the line front end of
// 'approvals watch' reads commands from stdin.
func approvals(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	sub := "watch|list" // --help: the flags both share
	switch {
	case len(args) > 0 && (args[0] == "watch" || args[0] == "list"):
		sub, args = args[0], args[1:]
	case len(args) == 0 || !isHelp(args[0]):
		return usageError("usage: writ %s", approvalsUsage)
	}
	fs := newFlags("approvals "+sub, approvalsUsage, stderr)
	var c conn
	c.register(fs, "your .creds file (required): the approver's identity")
	once := fs.Bool("once", false, "watch: print the pending requests and open break-glass reviews you may answer, then exit")
	asJSON := fs.Bool("json", false, "list: print the requests as JSON")
	domain := fs.String("domain", "", "only this domain's requests (default: every domain this setup reaches)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	who, nc, cl, err := c.openAs()
	if err != nil {
		return err
	}
	defer nc.Close()
	domains := reachable(ctx, cl, *domain, stderr)
	m := newWatchModel(who.Principal)
	if sub == "watch" && !*once {
		// Live: the watch lists what waits once it listens (WatchPending).
		if in, ok := stdin.(*os.File); ok && isTerminal(stdout) && term.IsTerminal(int(in.Fd())) {
			return watchTerminal(ctx, cl, who, domains, m, in, stdout.(*os.File))
		}
		return watchLines(ctx, cl, who, domains, m, stdin, stdout, stderr)
	}
	pending, err := cl.PendingIn(ctx, domains, who.Principal)
	if err != nil {
		return err
	}
	now := time.Now()
	if sub == "list" {
		views := viewsOf(pending)
		if *asJSON {
			return writeJSON(stdout, views)
		}
		if len(views) == 0 {
			fmt.Fprintf(stdout, "No pending requests or open reviews for %s.\n", who.Principal.ID())
		}
		for i, v := range views {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			if v.isReview() {
				fmt.Fprintf(stdout, "REVIEW %s in %s: break-glass, granted at once; answer it after the fact\n", v.ID, v.Domain)
			} else {
				fmt.Fprintf(stdout, "PENDING %s in %s\n", v.ID, v.Domain)
			}
			writeFacts(stdout, v, now, "  ")
		}
		return nil
	}
	if len(pending) == 0 {
		fmt.Fprintf(stdout, "No pending requests or open reviews for %s.\n", who.Principal.ID())
	}
	for _, r := range pending {
		fmt.Fprintln(stdout, m.Update(r.State, r.Records, now))
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// voteDone is the outcome of a vote the model asked for.
type voteDone struct {
	a   watchAction
	msg string
	err error
}

// watchLoop feeds the model: request updates from the stream, input from
// the front end, vote results, and clock ticks. It owns the watcher and the
// votes in flight, and returns once they are done. The reader of input is
// not its own: a read from a terminal or a pipe cannot be interrupted.
type watchLoop struct {
	cl        *client.Client
	who       *identity.Identity
	domains   []string // watched, each in its own stream
	m         *watchModel
	tick      time.Duration            // 0: no ticks
	input     <-chan string            // lines or keys; closed at the end of input
	handle    func(string) watchAction // input → action
	show      func(update string)      // after each change; update is the model's line for it, if any
	caughtUp  func()                   // once the requests waiting at the start are shown
	quitAtEOF bool
}

func (l *watchLoop) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	ctx, cancel := context.WithCancel(gctx)
	defer func() { cancel(); _ = g.Wait() }()
	// The requests waiting now, then a nil (caught up), then every update.
	updates := make(chan *client.Request, 64)
	send := func(r *client.Request) {
		select {
		case updates <- r:
		case <-ctx.Done():
		}
	}
	g.Go(func() error {
		return l.cl.WatchPending(ctx, l.domains, l.who.Principal, func() { send(nil) }, send)
	})
	results := make(chan voteDone)
	var tick <-chan time.Time
	if l.tick > 0 {
		t := time.NewTicker(l.tick)
		defer t.Stop()
		tick = t.C
	}
	input := l.input
	l.show("")
	for {
		select {
		case <-ctx.Done():
			cancel()
			return g.Wait()
		case r := <-updates:
			if r == nil {
				if l.caughtUp != nil {
					l.caughtUp()
				}
				continue
			}
			l.show(l.m.Update(r.State, r.Records, time.Now()))
		case s, ok := <-input:
			if !ok {
				if l.quitAtEOF {
					return nil
				}
				input = nil // keep watching without input
				continue
			}
			a := l.handle(s)
			switch a.Kind {
			case actQuit:
				return nil
			case actVote:
				g.Go(func() error {
					msg, err := submitVote(ctx, l.cl, l.who, a.Domain, a.ID, a.Digest, client.Vote{Approve: a.Approve, Reason: a.Reason})
					select {
					case results <- voteDone{a, msg, err}:
					case <-ctx.Done():
					}
					return nil
				})
			}
			l.show("")
		case d := <-results:
			l.m.Result(d.a, d.msg, d.err)
			l.show("")
		case <-tick:
			l.show("")
		}
	}
}

// watchLines is the line front end: the model's updates as lines on
// stdout, commands from stdin, results on stdout, errors on stderr.
func watchLines(ctx context.Context, cl *client.Client, who *identity.Identity, domains []string, m *watchModel, stdin io.Reader, stdout, stderr io.Writer) error {
	lines := make(chan string)
	go func() { // ends at the end of input; see watchLoop
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	lastStatus := ""
	l := &watchLoop{
		cl: cl, who: who, domains: domains, m: m, input: lines,
		caughtUp: func() {
			if len(m.items) == 0 {
				fmt.Fprintf(stdout, "No pending requests for %s.\n", who.Principal.ID())
			}
			fmt.Fprintf(stdout, "Watching for requests %s may answer in %s (Ctrl-C stops). Type: approve ID [reason] | deny ID reason | list\n", who.Principal.ID(), strings.Join(domains, ", "))
		},
		handle: func(line string) watchAction {
			a, err := m.Command(line)
			if err != nil {
				fmt.Fprintln(stderr, "writ:", err)
				return watchAction{}
			}
			if verb, _, _ := strings.Cut(strings.TrimSpace(line), " "); verb == "list" || verb == "help" || verb == "" {
				now := time.Now()
				if len(m.items) == 0 {
					fmt.Fprintf(stdout, "No pending requests or open reviews for %s.\n", who.Principal.ID())
				}
				for _, v := range m.items {
					fmt.Fprintln(stdout, pendingLine(v, now))
				}
			}
			return a
		},
		show: func(update string) {
			if update != "" {
				fmt.Fprintln(stdout, update)
			}
			if m.status != lastStatus {
				lastStatus = m.status
				if strings.HasSuffix(m.status, "…") {
					return // a vote on its way; its result follows
				}
				fmt.Fprintln(stdout, "RESULT   "+m.status)
			}
		},
	}
	return l.run(ctx)
}

// watchTerminal is the terminal front end: a full screen redrawn on each
// change and every second (the deadlines count down), keys in raw mode.
func watchTerminal(ctx context.Context, cl *client.Client, who *identity.Identity, domains []string, m *watchModel, in, out *os.File) error {
	fd := int(in.Fd())
	old, err := term.MakeRaw(fd)
	if err != nil {
		return fmt.Errorf("terminal: %w", err)
	}
	fmt.Fprint(out, "\x1b[?1049h\x1b[?25l") // alternate screen, no cursor
	defer func() {
		fmt.Fprint(out, "\x1b[?25h\x1b[?1049l")
		_ = term.Restore(fd, old)
	}()
	keys := make(chan string)
	go func() { // ends at the end of input; see watchLoop
		defer close(keys)
		buf := make([]byte, 256)
		for {
			n, err := in.Read(buf)
			for _, k := range decodeKeys(buf[:n]) {
				select {
				case keys <- k:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	l := &watchLoop{
		cl: cl, who: who, domains: domains, m: m, input: keys, tick: time.Second, quitAtEOF: true,
		handle: m.Key,
		show: func(string) {
			width, height, err := term.GetSize(int(out.Fd()))
			if err != nil {
				width, height = 0, 0
			}
			screen := strings.Split(strings.TrimRight(m.Render(time.Now(), width), "\n"), "\n")
			if height > 0 && len(screen) > height {
				screen = screen[:height]
			}
			fmt.Fprint(out, "\x1b[H\x1b[2J"+strings.Join(screen, "\r\n"))
		},
	}
	return l.run(ctx)
}
